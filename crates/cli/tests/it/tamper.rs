//! Tampering with the database behind the server's back, each case caught by the offline
//! `mandate audit verify --export … --checkpoint … --key …` against a checkpoint saved before
//! the tampering: one byte of one receipt changed (with and without re-sealing the whole chain
//! after it), a receipt deleted, two swapped, the tail truncated, and the whole database rolled
//! back to an older copy and then extended (a fork).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::proc::{ADMIN_KEY, ServerProcess, mandate};

/// A server with some history, a checkpoint and the keys saved, and a clean export verified.
struct Scene {
    dir: tempfile::TempDir,
    server: ServerProcess,
}

impl Scene {
    fn new(humans: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = ServerProcess::start(&dir.path().join("data"));
        let scene = Self { dir, server };
        scene.add_humans("h", humans);
        scene.ok(&["audit", "verifier-key"], Some("vkey"));
        scene.save_jwks();
        scene
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn db(&self) -> PathBuf {
        self.path("data").join("mandate.db")
    }

    /// Runs the CLI, expects exit 0, and optionally writes its stdout to `save`.
    fn ok(&self, args: &[&str], save: Option<&str>) -> String {
        let (code, out, err) = mandate(&self.server.url, ADMIN_KEY, args);
        assert_eq!(code, 0, "mandate {args:?}: {out}{err}");
        if let Some(name) = save {
            std::fs::write(self.path(name), &out).unwrap();
        }
        out
    }

    fn add_humans(&self, prefix: &str, n: usize) {
        for i in 0..n {
            self.ok(
                &[
                    "human",
                    "add",
                    "--name",
                    &format!("{prefix}{i}"),
                    "--email",
                    &format!("{prefix}{i}@example.com"),
                ],
                None,
            );
        }
    }

    /// The server's JWKS, fetched with Python's standard library (a public document).
    fn save_jwks(&self) {
        let out = Command::new("python3")
            .arg("-c")
            .arg("import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1] + '/jwks.json').read().decode())")
            .arg(&self.server.url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(self.path("jwks.json"), out.stdout).unwrap();
    }

    fn checkpoint(&self, name: &str) {
        let file = self.path(name);
        self.ok(&["audit", "checkpoint", "-o", file.to_str().unwrap()], None);
    }

    fn export(&self, name: &str) {
        let file = self.path(name);
        self.ok(&["audit", "export", "-o", file.to_str().unwrap()], None);
    }

    /// Offline verification (no server needed): exit code and output.
    fn verify(
        &self,
        export: &str,
        checkpoint: &str,
        key: &str,
        previous: Option<&str>,
    ) -> (i32, String) {
        let mut args = vec![
            "audit".to_owned(),
            "verify".into(),
            "--export".into(),
            self.path(export).to_string_lossy().into_owned(),
            "--checkpoint".into(),
            self.path(checkpoint).to_string_lossy().into_owned(),
            "--key".into(),
            self.path(key).to_string_lossy().into_owned(),
        ];
        if let Some(p) = previous {
            args.push("--previous-checkpoint".into());
            args.push(self.path(p).to_string_lossy().into_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // A dead server address: nothing may be fetched.
        let (code, out, err) = mandate("http://127.0.0.1:9", "", &args);
        (code, format!("{out}{err}"))
    }
}

/// Runs a Python program against the database file (`sqlite3` from its standard library).
fn python(db: &Path, program: &str) {
    let status = Command::new("python3")
        .arg("-c")
        .arg(program)
        .arg(db)
        .status()
        .unwrap();
    assert!(status.success(), "fault injection failed: {program}");
}

/// SQL run behind the live server's back.
fn sql(script: &str) -> String {
    format!(
        "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript({script:?}); c.commit()"
    )
}

/// Saves the checkpoint, proves a clean export verifies against it (with both key forms), then
/// runs the Python fault injection `program`, exports again and returns the offline verdict.
fn tampered(program: &str) -> (i32, String) {
    let scene = Scene::new(6);
    scene.checkpoint("cp");
    scene.export("clean.jsonl");
    for key in ["vkey", "jwks.json"] {
        let (code, out) = scene.verify("clean.jsonl", "cp", key, None);
        assert_eq!(code, 0, "a clean export verifies with `{key}`: {out}");
        assert!(
            out.contains("ledger ok") && out.contains("checkpoint ok"),
            "{out}"
        );
    }
    python(&scene.db(), program);
    scene.export("tampered.jsonl");
    let verdict = scene.verify("tampered.jsonl", "cp", "jwks.json", None);
    assert_eq!(
        verdict.0, 3,
        "tampering is a verification failure: {}",
        verdict.1
    );
    assert!(verdict.1.contains("ledger BROKEN"), "{}", verdict.1);
    verdict
}

#[test]
fn one_changed_byte_is_detected() {
    let (_, out) = tampered(&sql(
        "UPDATE receipts SET body = replace(body, '\"create\"', '\"creatE\"') WHERE seq = 4;",
    ));
    assert!(
        out.contains("receipt 4: content does not match its hash"),
        "{out}"
    );
}

/// Changes one byte of receipt 4, then re-seals it and every receipt after it (RFC 8785 form of
/// these receipts = sorted keys, no spaces, UTF-8), so the hash chain verifies again.
const RESEAL: &str = r#"
import hashlib, json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
prev = None
for tenant, seq, body, stored in c.execute("SELECT tenant, seq, body, hash FROM receipts ORDER BY seq").fetchall():
    if seq < 4:
        prev = stored.hex()
        continue
    r = json.loads(body)
    if seq == 4:
        r["action"] = "creatE"
    r["prev"] = prev
    text = json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    h = hashlib.sha256(text.encode()).digest()
    c.execute("UPDATE receipts SET body = ?, hash = ? WHERE tenant = ? AND seq = ?", (text, h, tenant, seq))
    prev = h.hex()
c.commit()
"#;

#[test]
fn one_changed_byte_with_the_chain_resealed_is_detected() {
    // The chain verifies again: only the signed Merkle root gives the change away.
    let (_, out) = tampered(RESEAL);
    assert!(
        out.contains("do not have the root signed in the checkpoint"),
        "{out}"
    );
}

#[test]
fn a_deleted_receipt_is_detected() {
    let (_, out) = tampered(&sql("DELETE FROM receipts WHERE seq = 4;"));
    assert!(out.contains("expected receipt 4, found receipt 5"), "{out}");
}

#[test]
fn two_swapped_receipts_are_detected() {
    let (_, out) = tampered(&sql(
        "UPDATE receipts SET seq = -1 WHERE seq = 4; UPDATE receipts SET seq = 4 WHERE seq = 5; \
         UPDATE receipts SET seq = 5 WHERE seq = -1;",
    ));
    assert!(out.contains("receipt 4: its `seq` member says 5"), "{out}");
}

#[test]
fn a_truncated_tail_is_detected() {
    let (_, out) = tampered(&sql("DELETE FROM receipts WHERE seq > 5;"));
    assert!(out.contains("export holds only 5"), "{out}");
}

#[test]
fn a_database_rolled_back_to_an_older_copy_is_detected() {
    let scene = Scene::new(3);
    let Scene { dir, server } = scene;
    server.kill9();
    // An old copy of the database files, taken while the server is stopped.
    let data = dir.path().join("data");
    let backup = dir.path().join("backup");
    std::fs::create_dir(&backup).unwrap();
    let files = ["mandate.db", "mandate.db-wal", "mandate.db-shm"];
    for f in files {
        if data.join(f).exists() {
            std::fs::copy(data.join(f), backup.join(f)).unwrap();
        }
    }
    // More work, and a checkpoint the auditor keeps.
    let scene = Scene {
        server: ServerProcess::start(&data),
        dir,
    };
    scene.add_humans("later", 3);
    scene.checkpoint("cp-kept");
    scene.export("before-rollback.jsonl");
    let (code, out) = scene.verify("before-rollback.jsonl", "cp-kept", "vkey", None);
    assert_eq!(code, 0, "{out}");
    let Scene { dir, server } = scene;
    server.kill9();
    // Roll back: the old copy replaces the database.
    for f in files {
        let _ = std::fs::remove_file(data.join(f));
        if backup.join(f).exists() {
            std::fs::copy(backup.join(f), data.join(f)).unwrap();
        }
    }
    let scene = Scene {
        server: ServerProcess::start(&data),
        dir,
    };
    // The rolled-back server carries on, and signs its own (forked) history.
    scene.add_humans("other", 5);
    scene.export("after-rollback.jsonl");
    scene.checkpoint("cp-fork");
    let (code, out) = scene.verify("after-rollback.jsonl", "cp-fork", "vkey", None);
    assert_eq!(code, 0, "on its own the fork looks fine: {out}");
    let (code, out) = scene.verify("after-rollback.jsonl", "cp-kept", "vkey", None);
    assert_eq!(code, 3, "the kept checkpoint catches the rollback: {out}");
    assert!(
        out.contains("do not have the root signed in the checkpoint"),
        "{out}"
    );
    let (code, out) = scene.verify("after-rollback.jsonl", "cp-fork", "vkey", Some("cp-kept"));
    assert_eq!(code, 3, "and so does consistency with it: {out}");
    assert!(
        out.contains("not consistent with the previous checkpoint"),
        "{out}"
    );
    let (code, out) = scene.verify("before-rollback.jsonl", "cp-kept", "jwks.json", None);
    assert_eq!(
        code, 0,
        "the export taken before the rollback still verifies: {out}"
    );
}
