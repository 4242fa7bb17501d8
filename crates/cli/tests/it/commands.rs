//! Exit codes, error lines, paging, key delivery and ledger verification.

use serde_json::{Value, json};

use crate::support::{API_KEY, Reply, mandate, serve, stderr, stdout};

fn problem(status: u16, slug: &str, title: &str, detail: &str) -> Reply {
    Reply(
        status,
        json!({"type": format!("urn:mandate:problem:{slug}"), "title": title, "status": status, "detail": detail}),
    )
}

#[test]
fn usage_errors_exit_2() {
    let out = mandate("http://127.0.0.1:9", &["human", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn missing_api_key_is_a_failure() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["--server", "http://127.0.0.1:9", "whoami"])
        .env_remove("MANDATE_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no API key"), "{}", stderr(&out));
}

#[test]
fn problem_responses_print_title_detail_status_and_never_the_key() {
    let (base, log) = serve(|_| problem(404, "not-found", "Not Found", "no human `usr_x`"));
    let out = mandate(&base, &["human", "show", "usr_x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: Not Found: no human `usr_x` (HTTP 404)\n"
    );
    assert!(!stdout(&out).contains(API_KEY) && !stderr(&out).contains(API_KEY));
    let seen = log.lock().unwrap();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/v1/humans/usr_x");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {API_KEY}").as_str())
    );
}

#[test]
fn unreachable_server_is_a_failure() {
    let out = mandate("http://127.0.0.1:9", &["whoami"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: cannot reach the server"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(API_KEY));
}

#[test]
fn lists_follow_cursors_to_the_end() {
    let human = |id: &str| json!({"id": id, "tenant": "ten_1", "name": "Ada", "email": "ada@example.com", "role": "admin", "status": "active", "created_at": "2026-11-23T10:00:00.123Z"});
    let (h1, h2) = (human("usr_one"), human("usr_two"));
    let (base, log) = serve(move |seen| {
        if seen.target.contains("cursor=c1") {
            Reply(200, json!({"items": [h2.clone()], "next": null}))
        } else {
            Reply(200, json!({"items": [h1.clone()], "next": "c1"}))
        }
    });
    let out = mandate(&base, &["human", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("usr_one") && stdout(&out).contains("usr_two"));
    let seen = log.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].target, "/v1/humans?limit=1000");
    assert_eq!(seen[1].target, "/v1/humans?limit=1000&cursor=c1");
    drop(seen);

    let out = mandate(&base, &["--json", "human", "list"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert_eq!(listed["next"], Value::Null);
}

#[test]
fn agent_add_saves_the_generated_key_and_does_not_print_it() {
    let (base, log) = serve(|_| {
        Reply(
            201,
            json!({
                "agent": {"id": "agt_1", "name": "bot", "owner": "usr_1", "status": "active", "keys": []},
                "private_jwk": {"kty": "OKP", "crv": "Ed25519", "x": "pub", "d": "THE-SECRET", "kid": "k"}
            }),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("bot.jwk");
    let args = [
        "--json",
        "agent",
        "add",
        "--name",
        "bot",
        "--owner",
        "usr_1",
        "--purpose",
        "tests",
        "--ceiling",
        r#"{"type":"mandate","actions":["read"]}"#,
        "--save-key",
        key_file.to_str().unwrap(),
    ];
    let out = mandate(&base, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains("THE-SECRET"));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["agent"]["id"], "agt_1");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert_eq!(saved["d"], "THE-SECRET");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let sent: Value = serde_json::from_str(&log.lock().unwrap()[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"name": "bot", "owner": "usr_1", "purpose": "tests", "ceiling": [{"type": "mandate", "actions": ["read"]}]})
    );

    // A second run must not overwrite the key file, and fails before calling the server.
    let out = mandate(&base, &args);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(log.lock().unwrap().len(), 1);
}

/// Two receipts whose hashes are sha256 of their JCS form, chained by `prev`.
fn chain() -> Vec<Value> {
    let receipt = |seq: u64, at: u64, prev: &str| {
        json!({"action": null, "actor": {"agent": null, "chain": [], "human": "usr_01jd8x3m5q7r9t1v3w5y7z9b2c"},
               "at": at, "decision": "allow", "delegation": null, "kind": "agent.registered",
               "on_behalf_of": null, "prev": prev, "reasons": [], "request_hash": null,
               "resource": null, "seq": seq, "tenant": "ten_01jd8x3m5q7r9t1v3w5y7z9b2c", "token": null})
    };
    let h1 = "f00eff4a0c8056284bb1fec98a17351ed741b4f118955b01160c80a693afe66e";
    let h2 = "1164d886d1fcecc9919e5bffc5625bf453db37646384bc6eb4058d78606dd1e8";
    vec![
        json!({"seq": 1, "hash": h1, "receipt": receipt(1, 1_795_946_400_124, &"0".repeat(64))}),
        json!({"seq": 2, "hash": h2, "receipt": receipt(2, 1_795_946_400_125, h1)}),
    ]
}

fn ledger_server(items: Vec<Value>) -> String {
    let (base, _) = serve(move |seen| {
        if seen.target.contains("cursor=1") {
            Reply(200, json!({"items": [items[1].clone()], "next": null}))
        } else {
            Reply(200, json!({"items": [items[0].clone()], "next": "1"}))
        }
    });
    base
}

#[test]
fn audit_verify_accepts_a_sound_chain() {
    let base = ledger_server(chain());
    let out = mandate(&base, &["audit", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out),
        "ledger ok: 2 receipts, head 1164d886d1fcecc9919e5bffc5625bf453db37646384bc6eb4058d78606dd1e8\n"
    );
    let out = mandate(&base, &["--json", "audit", "verify"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({"ok": true, "count": 2, "head": "1164d886d1fcecc9919e5bffc5625bf453db37646384bc6eb4058d78606dd1e8"})
    );
}

#[test]
fn audit_verify_exits_3_on_a_broken_link() {
    let mut items = chain();
    items[1]["receipt"]["prev"] = json!("1".repeat(64));
    let base = ledger_server(items);
    let out = mandate(&base, &["audit", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out),
        "ledger BROKEN at seq 2: `prev` does not link to receipt 1\n"
    );
}

#[test]
fn audit_verify_exits_3_on_a_tampered_receipt() {
    let mut items = chain();
    items[1]["receipt"]["at"] = json!(1);
    let base = ledger_server(items);
    let out = mandate(&base, &["audit", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stdout(&out),
        "ledger BROKEN at seq 2: content does not match its hash\n"
    );
    let out = mandate(&base, &["--json", "audit", "verify"]);
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["seq"], 2);
}

#[test]
fn audit_tail_shows_the_newest_receipts() {
    let base = ledger_server(chain());
    let out = mandate(&base, &["audit", "tail", "-n", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("2026-11-29T10:00:00.125Z"), "{text}");
}

#[test]
fn serve_rejects_unknown_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mandate.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nlisten_port = 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("listen_port"), "{}", stderr(&out));
}
