//! Interop with stock libraries: `interop/python/test_tokens.py` plays an agent and a gate
//! against the real server, once with PyJWT (`alg: EdDSA`, against a server signing with the
//! default `EdDSA`) and once with joserfc (`alg: Ed25519`, RFC 9864, against a server signing
//! with `Ed25519`): both signing settings of DESIGN §4. The interpreter is `MANDATE_PYTHON`,
//! the venv that `bash scripts/test` creates with the pinned `interop/python/requirements.txt`.

use std::path::PathBuf;
use std::process::Command;

use mandate_core::jose::Algorithm;
use mandate_server::{RunningServer, ServerConfig};

use crate::harness::ADMIN_KEY;

/// A server on the wall clock: the Python side stamps `iat`/`exp` with real time, which a
/// fixed test clock would see drift into the future.
async fn start(signing_alg: Algorithm) -> (RunningServer, tempfile::TempDir) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.bootstrap_key = Some(ADMIN_KEY.into());
    config.signing_alg = signing_alg;
    let running = mandate_server::start(config).await.expect("start");
    (running, dir)
}

async fn run_script(lib: &'static str, signing_alg: Algorithm) {
    let python = std::env::var_os("MANDATE_PYTHON").unwrap_or_else(|| {
        panic!(
            "MANDATE_PYTHON is not set: run the suite with `bash scripts/test`, which installs \
             the interop test's Python libraries (interop/python/requirements.txt) into a venv \
             and points MANDATE_PYTHON at its interpreter"
        )
    });
    let (server, _dir) = start(signing_alg).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/python/test_tokens.py");
    let url = server.url();
    // Off the runtime's threads: the server keeps serving while Python runs.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .args(["--lib", lib])
            .env("MANDATE_URL", url)
            .env("MANDATE_ADMIN_KEY", ADMIN_KEY)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.to_string_lossy()))
    })
    .await
    .expect("python task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "interop/python/test_tokens.py --lib {lib} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    print!("{stdout}");
}

#[tokio::test]
async fn pyjwt_agent_and_gate() {
    run_script("pyjwt", Algorithm::EdDSA).await;
}

#[tokio::test]
async fn joserfc_agent_and_gate() {
    run_script("joserfc", Algorithm::Ed25519).await;
}
