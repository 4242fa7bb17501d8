//! DESIGN §12 invariant 8 (issue: ledger proofs): after a full token → exchange → revoke flow
//! through the real binary, neither the database files nor the server's logs (at debug level)
//! contain an access token, a client assertion, an actor token, a DPoP proof, a delegation
//! document, an API key or a private key.

use std::path::Path;

use serde_json::Value;

use crate::proc::{ADMIN_KEY, ServerProcess, mandate};

fn ok(url: &str, key: &str, args: &[&str]) -> String {
    let (code, out, err) = mandate(url, key, args);
    assert_eq!(code, 0, "mandate {args:?}: {err}");
    out
}

fn json(url: &str, key: &str, args: &[&str]) -> Value {
    serde_json::from_str(&ok(url, key, args)).unwrap()
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every byte of every file under `dir`, as lossy text.
fn all_bytes(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
        }
    }
    out
}

#[test]
fn no_secret_reaches_the_database_or_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let server = ServerProcess::start_logging(&data, Some(&log));
    let url = server.url.clone();
    let f = |name: &str| dir.path().join(name);
    let scope = |a: &str| {
        format!(
            r#"{{"type":"mandate","actions":{a},"locations":["https://crm.example.com"],"resources":["tickets/*"]}}"#
        )
    };
    let alice = json(
        &url,
        ADMIN_KEY,
        &[
            "--json",
            "human",
            "add",
            "--name",
            "Alice",
            "--email",
            "alice@example.com",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice_key = json(&url, ADMIN_KEY, &["--json", "human", "api-key", &alice])["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut agents = Vec::new();
    for name in ["scan-a", "scan-b"] {
        let key = f(&format!("{name}.jwk"));
        let v = json(
            &url,
            ADMIN_KEY,
            &[
                "--json",
                "agent",
                "add",
                "--name",
                name,
                "--owner",
                &alice,
                "--purpose",
                "scan",
                "--ceiling",
                &scope(r#"["read","write"]"#),
                "--save-key",
                key.to_str().unwrap(),
            ],
        );
        agents.push((v["agent"]["id"].as_str().unwrap().to_owned(), key));
    }
    let doc = f("mandate.jwt");
    let m = json(
        &url,
        &alice_key,
        &[
            "--json",
            "mandate",
            "add",
            "--agent",
            &agents[0].0,
            "--authorization-details",
            &scope(r#"["read","write"]"#),
            "--purpose",
            "scan",
            "--save-document",
            doc.to_str().unwrap(),
        ],
    );
    let mandate_id = m["id"].as_str().unwrap().to_owned();
    let (a_tok, b_tok) = (f("a-token.json"), f("b-token.json"));
    ok(
        &url,
        ADMIN_KEY,
        &[
            "token",
            "redeem",
            "--key",
            agents[0].1.to_str().unwrap(),
            "--document",
            doc.to_str().unwrap(),
            "--save",
            a_tok.to_str().unwrap(),
        ],
    );
    ok(
        &url,
        ADMIN_KEY,
        &[
            "token",
            "delegate",
            "--key",
            agents[0].1.to_str().unwrap(),
            "--token",
            a_tok.to_str().unwrap(),
            "--to",
            &agents[1].0,
            "--to-key",
            agents[1].1.to_str().unwrap(),
            "--authorization-details",
            &scope(r#"["read"]"#),
            "--save",
            b_tok.to_str().unwrap(),
        ],
    );
    // Revoke one token by its id, then the mandate.
    let b_claims: Value = {
        let t = read(&b_tok)["access_token"].as_str().unwrap().to_owned();
        serde_json::from_slice(
            &mandate_core::encoding::b64url_decode(t.split('.').nth(1).unwrap()).unwrap(),
        )
        .unwrap()
    };
    ok(
        &url,
        ADMIN_KEY,
        &["revoke", "--token", b_claims["jti"].as_str().unwrap()],
    );
    ok(&url, ADMIN_KEY, &["delegation", "revoke", &mandate_id]);
    ok(&url, ADMIN_KEY, &["audit", "verify"]);
    drop(server);

    let mut secrets: Vec<(String, String)> = vec![
        ("admin API key".into(), ADMIN_KEY.into()),
        ("API key".into(), alice_key.clone()),
        (
            "delegation document".into(),
            std::fs::read_to_string(&doc).unwrap().trim().to_owned(),
        ),
    ];
    for (label, path) in [("token A", &a_tok), ("token B", &b_tok)] {
        let t = read(path);
        secrets.push((
            label.to_owned(),
            t["access_token"].as_str().unwrap().to_owned(),
        ));
        secrets.push((
            format!("{label} DPoP private key"),
            t["dpop_jwk"]["d"].as_str().unwrap().to_owned(),
        ));
    }
    for (id, key) in &agents {
        secrets.push((
            format!("private key of {id}"),
            read(key)["d"].as_str().unwrap().to_owned(),
        ));
    }
    // The server's own signing seeds.
    let ring = read(&data.join("signing-keys.json"));
    secrets.push((
        "server key (current)".into(),
        ring["current"].as_str().unwrap().to_owned(),
    ));
    secrets.push((
        "server key (next)".into(),
        ring["next"].as_str().unwrap().to_owned(),
    ));
    // Signatures are the unforgeable part of each token: check them on their own too.
    let sigs: Vec<(String, String)> = secrets
        .iter()
        .filter(|(_, v)| v.matches('.').count() == 2)
        .map(|(l, v)| {
            (
                format!("signature of {l}"),
                v.rsplit('.').next().unwrap().to_owned(),
            )
        })
        .collect();
    secrets.extend(sigs);

    let db: String = all_bytes(&data).replace(
        &std::fs::read_to_string(data.join("signing-keys.json")).unwrap(),
        "",
    );
    let logs = std::fs::read_to_string(&log).unwrap();
    eprintln!(
        "scanned {} bytes of database files and {} bytes of logs for {} secrets",
        db.len(),
        logs.len(),
        secrets.len()
    );
    assert!(
        logs.contains("INFO") || logs.contains("DEBUG") || logs.contains("mandate"),
        "the log was captured: {} bytes",
        logs.len()
    );
    for (label, value) in &secrets {
        assert!(
            !db.contains(value.as_str()),
            "{label} found in the database files"
        );
        assert!(!logs.contains(value.as_str()), "{label} found in the logs");
    }
    // No compact JWS of any kind (client assertions, consents and DPoP proofs were never saved
    // anywhere we could read them back, so look for their shape: a base64url JSON header).
    for (what, text) in [("database", &db), ("logs", &logs)] {
        assert!(
            !text.contains("eyJhbGciOi") && !text.contains("eyJ0eXAiOi"),
            "a JWS appears in the {what}"
        );
    }
}
