//! `kill -9` during a burst of 1000 concurrent agent registrations: after restart every
//! acknowledged registration exists and `mandate audit verify` passes (SECURITY line 8).

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::proc::{ADMIN_KEY, ServerProcess, mandate};

#[test]
fn kill_9_mid_burst_loses_no_acknowledged_registration() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data);
    let url = server.url.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();

    let owner: Value = rt.block_on(async {
        http.post(format!("{url}/v1/humans"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"name": "owner", "email": "owner@example.com"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let owner = owner["id"].as_str().unwrap().to_owned();

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let burst = {
        let acked = Arc::clone(&acked);
        let http = http.clone();
        let url = url.clone();
        std::thread::spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for i in 0..1000 {
                    let (http, url, owner, acked) =
                        (http.clone(), url.clone(), owner.clone(), Arc::clone(&acked));
                    let kill_tx = kill_tx.clone();
                    tasks.push(tokio::spawn(async move {
                        let body = json!({"name": format!("bot-{i}"), "owner": owner, "purpose": "crash test",
                            "ceiling": [{"type": "mandate", "actions": ["read"], "resources": ["**"]}]});
                        let resp = http
                            .post(format!("{url}/v1/agents"))
                            .bearer_auth(ADMIN_KEY)
                            .json(&body)
                            .send()
                            .await;
                        // Only a complete 201 with a body counts as acknowledged.
                        let Ok(r) = resp else { return };
                        if r.status() != 201 {
                            return;
                        }
                        if let Ok(v) = r.json::<Value>().await {
                            let id = v["agent"]["id"].as_str().unwrap().to_owned();
                            let mut a = acked.lock().unwrap();
                            a.push(id);
                            if a.len() == 250 {
                                let _ = kill_tx.send(());
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
    };
    kill_rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("250 registrations acknowledged");
    server.kill9();
    burst.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 250 && acked.len() < 1000,
        "killed mid-burst: {} acked",
        acked.len()
    );

    let server = ServerProcess::start(&data);
    let (code, out, err) = mandate(&server.url, ADMIN_KEY, &["--json", "agent", "list"]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).expect("json list");
    let listed: std::collections::HashSet<String> = listed
        .as_array()
        .or_else(|| listed["items"].as_array())
        .expect("array")
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &acked {
        assert!(listed.contains(id), "acknowledged agent {id} was lost");
    }
    let (code, out, err) = mandate(&server.url, ADMIN_KEY, &["audit", "verify"]);
    assert_eq!(code, 0, "audit verify failed: {out} {err}");
    assert!(out.contains("ledger ok"), "{out}");
    eprintln!(
        "kill -9 after {} acknowledged registrations; {} agents present after restart",
        acked.len(),
        listed.len()
    );
}
