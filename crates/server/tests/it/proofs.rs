//! The tenant log as a transparency log over HTTP: signed checkpoints that verify with the
//! published keys and match the receipts, inclusion and consistency proofs that verify, refusals
//! of sizes the tree does not have, isolation between tenants, re-signing after a key rotation,
//! the checkpoint left at shutdown — and `interop/python/verify_ledger.py`, sharing no code with
//! us, checking the same artefacts.

use std::path::PathBuf;
use std::process::Command;

use mandate_core::checkpoint::{NoteVerifier, verify};
use mandate_core::merkle::{Hash, MemoryTree, leaf_hash, verify_consistency, verify_inclusion};
use mandate_core::receipt::ReceiptHash;
use mandate_store::LedgerStore;
use mandate_store::sqlite::ledger::{LedgerOptions, SqliteLedger};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{self, ADMIN_KEY, Server};

/// Receipt items (`seq`, `hash`, `receipt`) of the caller's tenant.
async fn items(s: &Server, key: &str) -> Vec<Value> {
    s.receipts(key).await; // checks the chain
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let r = s
            .get(&format!("/v1/receipts?cursor={cursor}&limit=1000"), key)
            .await;
        out.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next"].as_u64() {
            Some(n) => cursor = n,
            None => return out,
        }
    }
}

fn tree(items: &[Value]) -> MemoryTree {
    MemoryTree::from_leaf_hashes(items.iter().map(|i| {
        let h = ReceiptHash::from_hex(i["hash"].as_str().unwrap()).unwrap();
        leaf_hash(&h.0)
    }))
    .unwrap()
}

async fn text(s: &Server, path: &str, key: &str) -> (StatusCode, String, String) {
    let r = s
        .http
        .get(s.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

/// A JSON `GET` (the checkpoint and verifier key are text unless JSON is asked for).
async fn jget(s: &Server, path: &str, key: &str) -> Value {
    let r = s
        .http
        .get(s.url(path))
        .bearer_auth(key)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

fn hex(v: &Value) -> Hash {
    Hash::from_hex(v.as_str().unwrap()).unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(hex).collect()
}

/// Some receipts: humans and agents.
async fn work(s: &Server, key: &str, n: usize) {
    for i in 0..n {
        let (human, _) = s.human(key, &format!("h{i}"), "admin").await;
        s.agent(key, &human, &format!("bot-{i}")).await;
    }
}

#[tokio::test]
async fn checkpoints_and_proofs_verify_against_the_receipts() {
    let s = harness::start().await;
    work(&s, ADMIN_KEY, 4).await;
    let items = items(&s, ADMIN_KEY).await;
    let n = items.len() as u64;
    let memory = tree(&items);

    // The checkpoint, as text, verifies with the verifier key and with the JWKS.
    let (status, ct, note) = text(&s, "/v1/ledger/checkpoint", ADMIN_KEY).await;
    assert_eq!(status, 200, "{note}");
    assert!(ct.starts_with("text/plain"), "{ct}");
    let (_, _, vkey) = text(&s, "/v1/ledger/verifier-key", ADMIN_KEY).await;
    let verifier = NoteVerifier::parse(vkey.trim()).unwrap();
    let (_, cp) = verify(note.as_bytes(), std::slice::from_ref(&verifier)).unwrap();
    assert_eq!(
        cp.size(),
        n,
        "covers every receipt acknowledged before the request"
    );
    assert_eq!(*cp.root(), memory.root().unwrap());
    let me = s.get("/v1/me", ADMIN_KEY).await.body;
    let tenant = me["tenant"]["id"].as_str().unwrap().to_owned();
    assert_eq!(cp.origin(), format!("127.0.0.1/mandate/{tenant}"));
    assert_eq!(verifier.name(), cp.origin());
    let jwks = s
        .call(reqwest::Method::GET, "/jwks.json", None, None)
        .await
        .body;
    let jwk = mandate_core::jwk::PublicJwk::from_json(&jwks["keys"][0]).unwrap();
    let from_jwks = NoteVerifier::new(cp.origin(), *jwk.verifying_key()).unwrap();
    verify(note.as_bytes(), &[from_jwks]).unwrap();

    // The same in JSON.
    let r = jget(&s, "/v1/ledger/checkpoint", ADMIN_KEY).await;
    assert_eq!(r["note"], note);
    assert_eq!(r["size"], n);
    assert_eq!(r["origin"], cp.origin());
    assert_eq!(hex(&r["root"]), memory.root().unwrap());
    let r = jget(&s, "/v1/ledger/verifier-key", ADMIN_KEY).await;
    assert_eq!(r["verifier_key"], vkey.trim());

    // Every receipt's inclusion proof leads to the signed root.
    for (index, item) in items.iter().enumerate() {
        let r = s
            .get(
                &format!("/v1/ledger/proof/inclusion?index={index}&size={n}"),
                ADMIN_KEY,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["seq"], index as u64 + 1);
        assert_eq!(r.body["receipt_hash"], item["hash"]);
        let receipt = ReceiptHash::from_hex(item["hash"].as_str().unwrap()).unwrap();
        let leaf = hex(&r.body["leaf_hash"]);
        assert_eq!(leaf, leaf_hash(&receipt.0));
        assert_eq!(hex(&r.body["root"]), *cp.root());
        verify_inclusion(index as u64, n, &leaf, &hashes(&r.body["proof"]), cp.root()).unwrap();
    }

    // Older checkpoints, signed on demand, are consistent with the newest.
    for old in [1, n / 3, n - 1, n] {
        let (status, _, old_note) =
            text(&s, &format!("/v1/ledger/checkpoint?size={old}"), ADMIN_KEY).await;
        assert_eq!(status, 200);
        let (_, old_cp) = verify(old_note.as_bytes(), std::slice::from_ref(&verifier)).unwrap();
        assert_eq!(old_cp.size(), old);
        assert_eq!(*old_cp.root(), memory.root_at(old).unwrap());
        let r = s
            .get(
                &format!("/v1/ledger/proof/consistency?from={old}&to={n}"),
                ADMIN_KEY,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(hex(&r.body["from_root"]), *old_cp.root());
        verify_consistency(old, n, old_cp.root(), cp.root(), &hashes(&r.body["proof"])).unwrap();
    }

    // Defaults: the current size.
    let r = s.get("/v1/ledger/proof/inclusion?index=0", ADMIN_KEY).await;
    assert_eq!(r.body["size"], n);
    let r = s
        .get("/v1/ledger/proof/consistency?from=1", ADMIN_KEY)
        .await;
    assert_eq!(r.body["to"], n);
}

#[tokio::test]
async fn sizes_the_tree_does_not_have_are_refused() {
    let s = harness::start().await;
    let n = items(&s, ADMIN_KEY).await.len() as u64;
    let cases = [
        (format!("/v1/ledger/checkpoint?size={}", n + 1), 404),
        (
            format!("/v1/ledger/proof/inclusion?index=0&size={}", n + 1),
            404,
        ),
        (
            format!("/v1/ledger/proof/inclusion?index={n}&size={n}"),
            400,
        ),
        (
            format!("/v1/ledger/proof/consistency?from={}&to={n}", n + 1),
            400,
        ),
        (
            format!("/v1/ledger/proof/consistency?from=0&to={}", n + 5),
            404,
        ),
        ("/v1/ledger/proof/inclusion".to_owned(), 400),
        ("/v1/ledger/proof/inclusion?index=-1".to_owned(), 400),
        ("/v1/ledger/checkpoint?size=1&extra=2".to_owned(), 400),
    ];
    for (path, status) in cases {
        let r = s.get(&path, ADMIN_KEY).await;
        assert_eq!(r.status.as_u16(), status, "{path}: {:?}", r.body);
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{path}"
        );
    }
    for path in [
        "/v1/ledger/checkpoint",
        "/v1/ledger/verifier-key",
        "/v1/ledger/proof/inclusion?index=0",
        "/v1/ledger/proof/consistency?from=0",
    ] {
        let r = s.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!(r.status, 401, "{path}");
    }
}

#[tokio::test]
async fn each_tenant_has_its_own_log() {
    let s = harness::start().await;
    let r = s
        .post(
            "/v1/tenants",
            ADMIN_KEY,
            json!({"name": "tenant-b", "owner": {"name": "Bea", "email": "bea@b.example"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let b_key = r.body["api_key"].as_str().unwrap().to_owned();
    work(&s, &b_key, 2).await;
    let a = jget(&s, "/v1/ledger/checkpoint", ADMIN_KEY).await;
    let b = jget(&s, "/v1/ledger/checkpoint", &b_key).await;
    assert_ne!(a["origin"], b["origin"]);
    assert_eq!(b["size"], items(&s, &b_key).await.len());
    assert_eq!(a["size"], items(&s, ADMIN_KEY).await.len());
    // B's verifier key does not verify A's checkpoints: the key name is the origin.
    let (_, _, b_vkey) = text(&s, "/v1/ledger/verifier-key", &b_key).await;
    let b_verifier = NoteVerifier::parse(b_vkey.trim()).unwrap();
    assert!(verify(a["note"].as_str().unwrap().as_bytes(), &[b_verifier]).is_err());
}

#[tokio::test]
async fn a_key_rotation_re_signs_the_checkpoint() {
    let s = harness::start().await;
    let before = jget(&s, "/v1/ledger/checkpoint", ADMIN_KEY).await;
    let r = s
        .post("/v1/server/signing-keys/rotate", ADMIN_KEY, json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let after = jget(&s, "/v1/ledger/checkpoint", ADMIN_KEY).await;
    assert_ne!(after["kid"], before["kid"]);
    let (_, _, vkey) = text(&s, "/v1/ledger/verifier-key", ADMIN_KEY).await;
    let verifier = NoteVerifier::parse(vkey.trim()).unwrap();
    verify(
        after["note"].as_str().unwrap().as_bytes(),
        std::slice::from_ref(&verifier),
    )
    .unwrap();
    // An older size, stored under the old key, is re-signed under the new one.
    let size = before["size"].as_u64().unwrap();
    let (_, _, old) = text(&s, &format!("/v1/ledger/checkpoint?size={size}"), ADMIN_KEY).await;
    verify(old.as_bytes(), &[verifier]).unwrap();
}

#[tokio::test]
async fn stopping_leaves_the_whole_log_integrated_and_signed() {
    let s = harness::start().await;
    work(&s, ADMIN_KEY, 3).await;
    let n = items(&s, ADMIN_KEY).await.len() as u64;
    let me = s.get("/v1/me", ADMIN_KEY).await.body;
    let tenant = mandate_core::id::TenantId::parse(me["tenant"]["id"].as_str().unwrap()).unwrap();
    let Server { running, dir, .. } = s;
    running.stop().await;
    let ledger =
        SqliteLedger::open(LedgerOptions::new(dir.path().join("data/mandate.db"))).unwrap();
    assert_eq!(ledger.tree_head(&tenant).await.unwrap().size, n);
    let cp = ledger.checkpoint(&tenant, None).await.unwrap().unwrap();
    assert_eq!(cp.size, n, "signed by the background task at shutdown");
}

/// `interop/python/verify_ledger.py`: stock `cryptography` and its own RFC 9162 hashing verify
/// the checkpoint's signature, the root of the export and an inclusion proof — and refuse an
/// export with one receipt changed.
#[tokio::test]
async fn python_verifies_checkpoint_export_and_inclusion_proof() {
    let python = std::env::var_os("MANDATE_PYTHON").unwrap_or_else(|| {
        panic!(
            "MANDATE_PYTHON is not set: run the suite with `bash scripts/test`, which points it \
             at a venv with interop/python/requirements.txt"
        )
    });
    let s = harness::start().await;
    work(&s, ADMIN_KEY, 5).await;
    let items = items(&s, ADMIN_KEY).await;
    let n = items.len();
    let cp = jget(&s, "/v1/ledger/checkpoint", ADMIN_KEY).await;
    assert_eq!(cp["size"], n);
    let (_, _, vkey) = text(&s, "/v1/ledger/verifier-key", ADMIN_KEY).await;
    let proof = s
        .get(
            &format!("/v1/ledger/proof/inclusion?index={}&size={n}", n / 2),
            ADMIN_KEY,
        )
        .await
        .body;

    let files = tempfile::tempdir().unwrap();
    let export: String = items.iter().map(|i| format!("{i}\n")).collect();
    std::fs::write(files.path().join("export.jsonl"), &export).unwrap();
    std::fs::write(
        files.path().join("checkpoint"),
        cp["note"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(files.path().join("vkey"), &vkey).unwrap();
    std::fs::write(files.path().join("proof.json"), proof.to_string()).unwrap();
    // One receipt changed, its hash recomputed so the chain breaks at the next link.
    let mut forged: Vec<Value> = items.clone();
    forged[2]["receipt"]["resource"] = json!("agents/agt_forged");
    std::fs::write(
        files.path().join("forged.jsonl"),
        forged.iter().map(|i| format!("{i}\n")).collect::<String>(),
    )
    .unwrap();

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/python/verify_ledger.py");
    let run = |export: &str| {
        let out = Command::new(&python)
            .arg(&script)
            .arg("--export")
            .arg(files.path().join(export))
            .arg("--checkpoint")
            .arg(files.path().join("checkpoint"))
            .arg("--verifier-key")
            .arg(files.path().join("vkey"))
            .arg("--inclusion")
            .arg(files.path().join("proof.json"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.to_string_lossy()));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = run("export.jsonl");
    assert!(ok, "verify_ledger.py failed:\n{stdout}{stderr}");
    assert!(stdout.contains("included in the signed tree"), "{stdout}");
    print!("{stdout}");
    let (ok, stdout, stderr) = run("forged.jsonl");
    assert!(!ok, "verify_ledger.py accepted a forged export:\n{stdout}");
    assert!(stderr.contains("receipt 3"), "{stderr}");
}
