//! `mandate approve` and `mandate approval …` against a real server: a gate holds a request for
//! approval, a human lists, shows, approves and denies through the CLI, and the gate's next ask
//! sees the decision.

use std::time::{SystemTime, UNIX_EPOCH};

use mandate_core::encoding::b64url;
use mandate_core::jose::{self, Algorithm, JwtKind};
use mandate_server::keys::ServerKey;
use serde_json::{Value, json};

use crate::proc::{ADMIN_KEY, ServerProcess, mandate};

const CRM: &str = "https://crm.example.com";

fn ok(url: &str, args: &[&str]) -> String {
    let (code, out, err) = mandate(url, ADMIN_KEY, args);
    assert_eq!(code, 0, "mandate {args:?}: {err}");
    out
}

fn ok_json(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(url, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("mandate {args:?}: {e}: {out}"))
}

fn write_jwk(dir: &std::path::Path, name: &str, key: &ServerKey) -> String {
    let file = dir.join(format!("{name}.jwk"));
    std::fs::write(&file, key.public().to_json().to_string()).unwrap();
    format!("@{}", file.display())
}

/// The gate asks `POST /v1/approvals/check` with a fresh client assertion.
fn gate_check(url: &str, gate: &str, key: &ServerKey, body: &Value) -> Value {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let jti = format!(
        "j{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let claims =
        json!({"iss": gate, "sub": gate, "aud": url, "iat": now, "exp": now + 60, "jti": jti});
    let assertion = jose::sign(
        JwtKind::ClientAssertion,
        Some(&key.kid()),
        Algorithm::EdDSA,
        &claims,
        key.signing_key(),
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/approvals/check"))
            .bearer_auth(assertion)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    })
}

#[test]
fn approve_and_deny_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let url = server.url.clone();
    let me = ok_json(&url, &["whoami"])["human"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent_key = ServerKey::from_seed(&[41; 32]);
    let ceiling = json!([{"type": "mandate", "actions": ["read", "delete"], "locations": [CRM], "resources": ["tickets/*"]}]).to_string();
    let agent = ok_json(
        &url,
        &[
            "agent",
            "add",
            "--name",
            "cleaner",
            "--owner",
            &me,
            "--purpose",
            "close stale tickets",
            "--ceiling",
            &ceiling,
            "--jwk",
            &write_jwk(dir.path(), "agent", &agent_key),
        ],
    )["agent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let gate_key = ServerKey::from_seed(&[42; 32]);
    let gate = ok_json(
        &url,
        &[
            "gate",
            "add",
            "--name",
            "crm-gate",
            "--audience",
            CRM,
            "--jwk",
            &write_jwk(dir.path(), "gate", &gate_key),
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let details = json!([{"type": "mandate", "actions": ["delete"], "locations": [CRM], "resources": ["tickets/*"], "constraints": {"approval_required_for": ["delete"]}}]).to_string();
    let doc = dir.path().join("mandate.jwt");
    let del = ok_json(
        &url,
        &[
            "mandate",
            "add",
            "--agent",
            &agent,
            "--authorization-details",
            &details,
            "--purpose",
            "close stale tickets",
            "--save-document",
            doc.to_str().unwrap(),
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let ask = |n: u8| {
        json!({"request_hash": b64url(&[n; 32]), "delegation": del, "agent": agent,
               "action": "delete", "resource": format!("tickets/{n}"),
               "summary": format!("delete ticket {n}")})
    };
    let first = gate_check(&url, &gate, &gate_key, &ask(1));
    assert_eq!(first["status"], "pending", "{first}");
    let id = first["id"].as_str().unwrap().to_owned();

    // The table lists it; `--json` gives the list envelope.
    let table = ok(&url, &["approval", "list", "--status", "pending"]);
    assert!(table.contains(&id), "{table}");
    assert!(table.contains("delete ticket 1"), "{table}");
    let listed = ok_json(&url, &["approval", "list", "--status", "pending"]);
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert_eq!(listed["next"], Value::Null);

    // `mandate approve`: a table by default, the object with `--json`.
    let table = ok(&url, &["approve", &id, "--reason", "stale for a year"]);
    assert!(table.contains("approved"), "{table}");
    let shown = ok_json(&url, &["approval", "show", &id]);
    assert_eq!(shown["status"], "approved");
    assert_eq!(shown["decided_by"], me.as_str());
    // Deciding again fails with the server's conflict, on stderr, exit 1.
    let (code, out, err) = mandate(&url, ADMIN_KEY, &["approval", "deny", &id]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("409") || err.to_lowercase().contains("conflict"),
        "{err}"
    );
    // The gate's next ask uses it once.
    assert_eq!(
        gate_check(&url, &gate, &gate_key, &ask(1)),
        json!({"status": "approved", "id": id})
    );
    assert_eq!(
        ok_json(&url, &["approval", "show", &id])["status"],
        "consumed"
    );

    // Deny another.
    let second = gate_check(&url, &gate, &gate_key, &ask(2))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied = ok_json(&url, &["approval", "deny", &second, "--reason", "keep it"]);
    assert_eq!(denied["status"], "denied");
    assert_eq!(
        gate_check(&url, &gate, &gate_key, &ask(2)),
        json!({"status": "denied", "id": second})
    );
    let all = ok_json(&url, &["approval", "list"]);
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        ok_json(&url, &["approval", "list", "--status", "pending"])["items"],
        json!([])
    );
    // An unknown id is the server's 404.
    let (code, _, err) = mandate(
        &url,
        ADMIN_KEY,
        &["approve", "apr_00000000000000000000000000"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("404") || err.to_lowercase().contains("not found"),
        "{err}"
    );
}
