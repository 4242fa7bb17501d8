//! End-to-end through the real binaries: the official MCP Python SDK's client, holding a
//! DPoP-bound Mandate token, calls an MCP server built with the same SDK through
//! `mandate gate --config` (interop/python/test_mcp_gate.py does the talking; this drives it
//! against a fresh `mandate serve`). The interpreter is `MANDATE_PYTHON`, the venv
//! `bash scripts/test` creates from interop/python/requirements.txt.

use std::path::PathBuf;
use std::process::Command;

use crate::proc::{ADMIN_KEY, ServerProcess, bin};

#[test]
fn mcp_sdk_client_through_the_gate() {
    let python = std::env::var_os("MANDATE_PYTHON").unwrap_or_else(|| {
        panic!(
            "MANDATE_PYTHON is not set: run the suite with `bash scripts/test`, which installs the \
             MCP SDK (interop/python/requirements.txt) into a venv and points MANDATE_PYTHON at it"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let work = dir.path().join("gate");
    std::fs::create_dir_all(&work).unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/python/test_mcp_gate.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(&work)
        .env("MANDATE_URL", &server.url)
        .env("MANDATE_ADMIN_KEY", ADMIN_KEY)
        .env("MANDATE_BIN", bin())
        .output()
        .expect("run the MCP end-to-end script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "MCP end-to-end failed:\n{stdout}\n{stderr}"
    );
}
