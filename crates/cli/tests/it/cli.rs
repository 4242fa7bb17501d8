//! The CLI over a real server: the README's steps, tables vs `--json`, and `audit verify`
//! naming the first bad record of a tampered ledger.

use serde_json::Value;

use crate::proc::{ADMIN_KEY, ServerProcess, mandate};

#[test]
fn readme_steps_register_a_human_and_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let url = server.url.clone();

    let (code, out, err) = mandate(&url, ADMIN_KEY, &["whoami"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("owner"), "{out}");

    let (code, out, err) = mandate(
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
    );
    assert_eq!(code, 0, "{err}");
    let alice: Value = serde_json::from_str(&out).unwrap();
    let alice = alice["id"].as_str().unwrap().to_owned();

    let key_file = dir.path().join("triage.jwk");
    let (code, out, err) = mandate(
        &url,
        ADMIN_KEY,
        &[
            "--json",
            "agent",
            "add",
            "--name",
            "triage-bot",
            "--owner",
            &alice,
            "--purpose",
            "triage support tickets",
            "--ceiling",
            r#"[{"type":"mandate","actions":["read","write"],"resources":["tickets/*"]}]"#,
            "--save-key",
            key_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let agent: Value = serde_json::from_str(&out).unwrap();
    let agent_id = agent["agent"]["id"].as_str().unwrap().to_owned();
    assert!(
        !out.contains("\"d\""),
        "the private key goes to the file, not stdout"
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert!(saved["d"].is_string());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Tables for people.
    let (code, out, _) = mandate(&url, ADMIN_KEY, &["agent", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("triage-bot") && out.contains(&agent_id),
        "{out}"
    );
    let (code, out, _) = mandate(&url, ADMIN_KEY, &["agent", "show", &agent_id]);
    assert_eq!(code, 0);
    assert!(
        out.contains("spiffe://") && out.contains("did:key:"),
        "{out}"
    );
    let (code, _, err) = mandate(
        &url,
        ADMIN_KEY,
        &["agent", "suspend", &agent_id, "--reason", "test"],
    );
    assert_eq!(code, 0, "{err}");

    // Errors are clear and non-zero.
    let (code, _, err) = mandate(
        &url,
        ADMIN_KEY,
        &["agent", "show", "agt_00000000000000000000000000"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = mandate(&url, "mnd_wrong_key_0000000000000000000000", &["whoami"]);
    assert_eq!(code, 1);
    assert!(
        !err.contains("mnd_wrong"),
        "the key is never printed: {err}"
    );

    let (code, out, err) = mandate(&url, ADMIN_KEY, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ledger ok"), "{out}");
    let (code, out, _) = mandate(&url, ADMIN_KEY, &["audit", "tail", "-n", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("agent.suspended"), "{out}");
}

#[test]
fn audit_verify_names_the_first_tampered_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data);
    for name in ["a", "b", "c"] {
        let (code, _, err) = mandate(
            &server.url,
            ADMIN_KEY,
            &[
                "human",
                "add",
                "--name",
                name,
                "--email",
                &format!("{name}@x.example"),
            ],
        );
        assert_eq!(code, 0, "{err}");
    }
    // Change one byte of receipt 3 behind the server's back.
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE receipts SET body=replace(body,'\\\"create\\\"','\\\"creatE\\\"') WHERE seq=3\"); c.commit()")
        .arg(data.join("mandate.db"))
        .status()
        .unwrap();
    assert!(status.success());
    let (code, out, err) = mandate(&server.url, ADMIN_KEY, &["audit", "verify"]);
    assert_eq!(code, 3, "tampering is a verification failure: {out}{err}");
    assert!(format!("{out}{err}").contains("seq 3"), "{out}{err}");
    let (code, out, _) = mandate(&server.url, ADMIN_KEY, &["--json", "audit", "verify"]);
    assert_eq!(code, 3);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["seq"], 3);
}
