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
    let Server { running, db, .. } = s;
    running.stop().await;
    let ledger = db.open_ledger().await;
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

/// DESIGN §6: receipts hold ids and hashes only. After a full token flow — redeem a mandate,
/// exchange the token for a sub-agent, introspect, revoke the token and the mandate — no access
/// token, client assertion, actor token, DPoP proof or private key is anywhere in the database
/// files (nor in the receipts the API serves): not whole, not their signatures, not the keys in
/// raw, hex or base64url form.
#[tokio::test]
async fn no_token_assertion_proof_or_private_key_reaches_the_database() {
    use crate::tokens::{BEARER, CRM, Dpop, EXCHANGE, register_agent, world};
    use mandate_core::encoding::{b64url, hex as to_hex};
    use mandate_core::jose::{self, Algorithm, JwtKind};

    let w = world().await;
    let me = w.s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sub = register_agent(&w.s, &me, "sub-bot", 31).await;
    let mut secrets: Vec<String> = Vec::new();

    // Redeem the mandate.
    let dpop = Dpop::new(90);
    let assertion = w.agent.assertion(&w.s, json!({}));
    let proof = dpop.proof(&w.s, "POST", "/oauth2/token", json!({}));
    let (status, _, body) = w
        .redeem_with(&assertion, &w.document, Some(&proof), &[])
        .await;
    assert_eq!(status, 200, "{body:?}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    secrets.extend([assertion, proof, token.clone()]);

    // Exchange it for the sub-agent, with its consent.
    let sub_dpop = Dpop::new(91);
    let now = w.s.clock_secs();
    let consent = jose::sign(
        JwtKind::ActorToken,
        Some(&sub.kid()),
        Algorithm::EdDSA,
        &json!({"iss": sub.id, "sub": sub.id, "aud": w.s.running.issuer, "iat": now,
            "exp": now + 120, "jti": crate::tokens::nonce(), "delegator": w.agent.id,
            "cnf": {"jkt": sub_dpop.jkt()}}),
        &sub.key,
    );
    let assertion = w.agent.assertion(&w.s, json!({}));
    let proof = dpop.proof(&w.s, "POST", "/oauth2/token", json!({}));
    let details =
        json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/42"]}])
            .to_string();
    let (status, _, body) =
        w.s.form(
            "/oauth2/token",
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", &token),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("actor_token", &consent),
                ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("client_assertion_type", BEARER),
                ("client_assertion", &assertion),
                ("authorization_details", &details),
            ],
            Some(&proof),
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    let sub_token = body["access_token"].as_str().unwrap().to_owned();
    secrets.extend([consent, assertion, proof, sub_token.clone()]);

    // Introspect, revoke the sub-agent's token, then the mandate.
    assert_eq!(w.introspect(&sub_token).await["active"], true);
    let assertion = sub.assertion(&w.s, json!({}));
    let (status, _, _) =
        w.s.form(
            "/oauth2/revoke",
            &[
                ("token", &sub_token),
                ("client_assertion_type", BEARER),
                ("client_assertion", &assertion),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200);
    secrets.push(assertion);
    let r =
        w.s.post(
            &format!("/v1/delegations/{}/revoke", w.mandate),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(w.introspect(&token).await, json!({"active": false}));
    // The gate's assertions were made inside `introspect`; one more of the same shape.
    secrets.push(w.gate.assertion(&w.s, json!({})));
    secrets.push(ADMIN_KEY.to_owned());

    // Each JWT also by its signature alone (the part only the holder of the key can make).
    let signatures: Vec<String> = secrets
        .iter()
        .filter_map(|s| s.rsplit('.').next().filter(|sig| sig.len() > 40))
        .map(str::to_owned)
        .collect();
    secrets.extend(signatures);
    // Private keys: the agents', the gate's and the DPoP keys, in every usual spelling.
    let mut keys: Vec<[u8; 32]> = [
        &w.agent.key,
        &w.gate.key,
        &sub.key,
        &dpop.key,
        &sub_dpop.key,
    ]
    .iter()
    .map(|k| k.to_bytes())
    .collect();
    // The server's own signing seeds live in their 0600 file, never in the database.
    let ring: Value = serde_json::from_str(
        &std::fs::read_to_string(w.s.dir.path().join("data/signing-keys.json")).unwrap(),
    )
    .unwrap();
    for name in ["current", "next"] {
        let seed = mandate_core::encoding::b64url_decode(ring[name].as_str().unwrap()).unwrap();
        keys.push(seed.try_into().unwrap());
    }
    let mut needles: Vec<Vec<u8>> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
    for k in &keys {
        needles.extend([k.to_vec(), to_hex(k).into_bytes(), b64url(k).into_bytes()]);
    }

    let served = items(&w.s, ADMIN_KEY).await;
    let served = serde_json::to_vec(&served).unwrap();
    let Server {
        running, dir, db, ..
    } = w.s;
    running.stop().await;
    let mut haystacks = vec![("GET /v1/receipts".to_owned(), served)];
    haystacks.extend(db.dump().await);
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "signing-keys.json") {
            continue;
        }
        haystacks.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    assert!(haystacks.len() >= 2, "the database files exist");
    for (name, bytes) in &haystacks {
        for needle in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{name} contains a secret: {}",
                String::from_utf8_lossy(&needle[..needle.len().min(24)])
            );
        }
    }
}
