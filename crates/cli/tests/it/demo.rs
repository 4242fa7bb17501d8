//! `mandate demo` (the README's first command) runs its whole tour and says what it proved.

use std::process::Command;

use crate::proc::bin;

#[test]
fn the_demo_tour_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["demo", "--data"])
        .arg(dir.path())
        .env("MANDATE_LOG", "warn")
        .output()
        .expect("run mandate demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for expected in [
        "GET /tickets/42 → HTTP 200",
        "\"authorization_seen\":false",
        "DELETE /tickets/42 → HTTP 403",
        "error=\"insufficient_scope\"",
        "approval_id",
        "DELETE /tickets/42 (approved) → HTTP 200",
        "DELETE /tickets/42 (again) → HTTP 403",
        "the token's delegation was revoked",
        "ledger ok:",
    ] {
        assert!(
            stdout.contains(expected),
            "demo output lacks `{expected}`:\n{stdout}"
        );
    }
    // Nothing secret on the terminal: no access token, no private key.
    assert!(!stdout.contains("eyJ"), "a JWT was printed:\n{stdout}");
    assert!(!stdout.contains("\"d\":"), "a private key was printed");
}
