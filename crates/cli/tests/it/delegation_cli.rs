//! Mandates, delegation trees, revocation of every kind, key rotation and the event stream,
//! driven through the `mandate` binary against a real server. The one step the admin API
//! cannot do — an agent sub-delegating by token exchange — is done over OAuth here.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mandate_core::jose::{self, Algorithm, JwtKind};
use mandate_server::keys::ServerKey;
use serde_json::{Value, json};

use crate::proc::{ADMIN_KEY, ServerProcess, bin, mandate};

const CRM: &str = "https://crm.example.com";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Runs the CLI and requires exit 0; returns stdout.
fn ok(url: &str, args: &[&str]) -> String {
    let (code, out, err) = mandate(url, ADMIN_KEY, args);
    assert_eq!(code, 0, "mandate {args:?}: {err}");
    out
}

/// Runs the CLI with `--json` and requires exit 0; returns the parsed output.
fn ok_json(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(url, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("mandate {args:?}: {e}: {out}"))
}

fn ceiling() -> String {
    json!([{"type": "mandate", "actions": ["read", "write"], "locations": [CRM], "resources": ["tickets/**"]}])
        .to_string()
}

/// An agent whose Ed25519 key is derived from `seed`, registered through the CLI.
struct Agent {
    id: String,
    key: ServerKey,
}

fn add_agent(url: &str, dir: &Path, owner: &str, name: &str, seed: u8) -> Agent {
    let key = ServerKey::from_seed(&[seed; 32]);
    let jwk_file = dir.join(format!("{name}.jwk"));
    std::fs::write(&jwk_file, key.public().to_json().to_string()).unwrap();
    let jwk_arg = format!("@{}", jwk_file.display());
    let created = ok_json(
        url,
        &[
            "agent",
            "add",
            "--name",
            name,
            "--owner",
            owner,
            "--purpose",
            "triage support tickets",
            "--ceiling",
            &ceiling(),
            "--jwk",
            &jwk_arg,
        ],
    );
    Agent {
        id: created["agent"]["id"].as_str().unwrap().to_owned(),
        key,
    }
}

fn add_human(url: &str, name: &str) -> String {
    let email = format!("{}@example.com", name.to_lowercase());
    let human = ok_json(url, &["human", "add", "--name", name, "--email", &email]);
    human["id"].as_str().unwrap().to_owned()
}

fn nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("n{t}x{}", N.fetch_add(1, Ordering::SeqCst))
}

fn now_secs() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A client assertion (RFC 7523) or, with `delegator`, a sub-agent's consent (actor token).
fn assertion(issuer: &str, agent: &Agent, kind: JwtKind, delegator: Option<&str>) -> String {
    let now = now_secs();
    let mut claims = json!({"iss": agent.id, "sub": agent.id, "aud": issuer, "iat": now, "exp": now + 120, "jti": nonce()});
    if let Some(d) = delegator {
        claims["delegator"] = json!(d);
    }
    jose::sign(
        kind,
        Some(&agent.key.kid()),
        Algorithm::EdDSA,
        &claims,
        agent.key.signing_key(),
    )
}

fn dpop_proof(issuer: &str, key: &ServerKey) -> String {
    let claims = json!({"jti": nonce(), "htm": "POST", "htu": format!("{issuer}/oauth2/token"), "iat": now_secs()});
    jose::sign_with_jwk(
        JwtKind::DpopProof,
        Algorithm::EdDSA,
        &claims,
        key.signing_key(),
    )
}

/// POSTs a form to the token endpoint with a DPoP proof.
fn token_request(issuer: &str, params: &[(&str, &str)], dpop: &str) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut form = reqwest::Url::parse("http://form.invalid/").unwrap();
    form.query_pairs_mut().extend_pairs(params);
    let body = form.query().unwrap_or("").to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{issuer}/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("DPoP", dpop)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    })
}

/// Agent `a` redeems `document`, then delegates `read tickets/42` to agent `b`. Returns a's
/// access token and the id of the sub-delegation.
fn sub_delegate(issuer: &str, a: &Agent, b: &Agent, document: &str) -> (String, String) {
    let dpop = ServerKey::from_seed(&[77; 32]);
    let client = assertion(issuer, a, JwtKind::ClientAssertion, None);
    let redeemed = token_request(
        issuer,
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", document),
            ("subject_token_type", "urn:mandate:token-type:delegation"),
            ("client_assertion_type", BEARER),
            ("client_assertion", &client),
        ],
        &dpop_proof(issuer, &dpop),
    );
    let a_token = redeemed["access_token"].as_str().unwrap().to_owned();
    let consent = assertion(issuer, b, JwtKind::ActorToken, Some(&a.id));
    let client = assertion(issuer, a, JwtKind::ClientAssertion, None);
    let details = json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": ["tickets/42"]}]).to_string();
    let delegated = token_request(
        issuer,
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", &a_token),
            ("subject_token_type", ACCESS),
            ("actor_token", &consent),
            ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("authorization_details", &details),
            ("client_assertion_type", BEARER),
            ("client_assertion", &client),
        ],
        &dpop_proof(issuer, &dpop),
    );
    (
        a_token,
        delegated["delegation"].as_str().unwrap().to_owned(),
    )
}

fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&mandate_core::encoding::b64url_decode(payload).unwrap()).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

#[test]
fn mandate_tree_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let url = server.url.clone();
    let alice = add_human(&url, "Alice");
    let a = add_agent(&url, dir.path(), &alice, "planner", 11);
    let b = add_agent(&url, dir.path(), &alice, "reader", 12);
    let details = json!([{"type": "mandate", "actions": ["read", "write"], "locations": [CRM], "resources": ["tickets/*"]}]).to_string();

    // Saved: the document goes to a private file and never to stdout.
    let doc_file = dir.path().join("mandate.jwt");
    let created = ok_json(
        &url,
        &[
            "mandate",
            "add",
            "--agent",
            &a.id,
            "--authorization-details",
            &details,
            "--prohibitions",
            r#"{"actions":["write"],"resources":["tickets/0"]}"#,
            "--purpose",
            "triage the queue",
            "--task-id",
            "T-1",
            "--save-document",
            doc_file.to_str().unwrap(),
        ],
    );
    let mandate_id = created["id"].as_str().unwrap().to_owned();
    assert!(created.get("delegation").is_none(), "{created}");
    assert_eq!(created["mandate"]["delegate"], a.id);
    assert_eq!(created["mandate"]["task_id"], "T-1");
    let document = std::fs::read_to_string(&doc_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(document.split('.').count(), 3, "{document}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&doc_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // An existing file is never overwritten, and nothing is created then.
    let (code, _, err) = mandate(
        &url,
        ADMIN_KEY,
        &[
            "mandate",
            "add",
            "--agent",
            &a.id,
            "--authorization-details",
            &details,
            "--purpose",
            "p",
            "--save-document",
            doc_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");

    // Not saved: the table, then the document, with a note on stderr.
    let (code, out, err) = mandate(
        &url,
        ADMIN_KEY,
        &[
            "mandate",
            "add",
            "--agent",
            &a.id,
            "--authorization-details",
            &details,
            "--expires-in",
            "600",
            "--max-depth",
            "1",
            "--purpose",
            "one-off",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("delegation document"), "{out}");
    assert!(out.contains(&a.id) && out.contains("one-off"), "{out}");
    assert!(err.contains("treat it like a secret"), "{err}");

    // A widening request is the server's 422, reported as a failure.
    let (code, _, err) = mandate(
        &url,
        ADMIN_KEY,
        &[
            "mandate",
            "add",
            "--agent",
            &a.id,
            "--authorization-details",
            r#"{"type":"mandate","actions":["delete"],"locations":["https://crm.example.com"],"resources":["tickets/*"]}"#,
            "--purpose",
            "p",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 422"), "{err}");

    // A sub-delegates to B over OAuth; the tree shows both.
    let (a_token, sub_id) = sub_delegate(&url, &a, &b, &document);
    let tree = ok(&url, &["delegation", "tree", &mandate_id]);
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 2, "{tree}");
    assert!(
        lines[0].starts_with(&a.id) && lines[0].contains(&mandate_id),
        "{tree}"
    );
    assert!(
        lines[0].contains("depth 1") && lines[0].contains("active"),
        "{tree}"
    );
    assert!(lines[0].contains("read, write"), "{tree}");
    assert!(lines[1].starts_with("└─ "), "{tree}");
    assert!(
        lines[1].contains(&b.id) && lines[1].contains(&sub_id),
        "{tree}"
    );
    assert!(
        lines[1].contains("depth 2") && lines[1].contains("read"),
        "{tree}"
    );
    let raw = ok_json(&url, &["delegation", "tree", &mandate_id]);
    assert_eq!(raw["children"][0]["delegate"], b.id);
    assert_eq!(raw["children"][0]["children"], json!([]));

    let listed = ok(&url, &["delegation", "list", "--agent", &a.id]);
    assert!(
        listed.contains("(in): 2") && listed.contains("(out): 1"),
        "{listed}"
    );
    let both = ok_json(&url, &["delegation", "list", "--agent", &b.id]);
    assert_eq!(both["in"][0]["id"], sub_id);
    assert_eq!(both["out"], json!([]));

    // One token, by its jti.
    let jti = jti_of(&a_token);
    let out = ok(&url, &["revoke", "--token", &jti, "--reason", "leaked"]);
    assert!(out.contains(&jti) && out.contains("revoked"), "{out}");

    // Revoking the mandate takes the sub-delegation with it.
    let out = ok(
        &url,
        &["delegation", "revoke", &mandate_id, "--reason", "task done"],
    );
    assert!(out.contains("revoked 2 delegations"), "{out}");
    let shown = ok(&url, &["delegation", "show", &sub_id]);
    assert!(shown.contains("revoked"), "{shown}");
    let shown = ok_json(&url, &["delegation", "show", &sub_id]);
    assert_eq!(shown["status"], "revoked");
    assert!(shown["revoked_at"].is_string());
    let tree = ok(&url, &["delegation", "tree", &mandate_id]);
    assert_eq!(tree.matches("REVOKED").count(), 2, "{tree}");

    // `revoke --delegation` is the same call; a revoked delegation stays revoked.
    let (code, _, err) = mandate(&url, ADMIN_KEY, &["revoke", "--delegation", &sub_id]);
    assert_eq!(code, 1);
    assert!(err.contains("already revoked"), "{err}");
    let in_a = ok_json(&url, &["delegation", "list", "--agent", &a.id]);
    let one_off = in_a["in"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["purpose"] == "one-off")
        .unwrap();
    assert_eq!(one_off["max_depth"], 1);
    let again = ok_json(
        &url,
        &["revoke", "--delegation", one_off["id"].as_str().unwrap()],
    );
    assert_eq!(again["status"], "revoked");
    assert_eq!(again["revoked_delegations"], 1);

    // `revoke --agent`.
    let out = ok(&url, &["revoke", "--agent", &b.id, "--reason", "retired"]);
    assert!(out.contains(&b.id), "{out}");
    let shown = ok_json(&url, &["agent", "show", &b.id]);
    assert_eq!(shown["status"], "revoked");

    // `revoke --human`.
    let bob = add_human(&url, "Bob");
    let revoked = ok_json(&url, &["revoke", "--human", &bob]);
    assert_eq!(revoked["status"], "revoked");

    // `revoke --key AGENT:KID`: the last active key cannot go; after adding one, it can.
    let a_kid = a.key.kid();
    let key_target = format!("{}:{a_kid}", a.id);
    let (code, _, err) = mandate(&url, ADMIN_KEY, &["revoke", "--key", &key_target]);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 409"), "{err}");
    let extra = dir.path().join("extra.jwk");
    ok(
        &url,
        &[
            "key",
            "add",
            "--agent",
            &a.id,
            "--save-key",
            extra.to_str().unwrap(),
        ],
    );
    let retired = ok_json(&url, &["revoke", "--key", &key_target]);
    assert_eq!(retired["kid"], a_kid);
    assert_eq!(retired["status"], "retired");
    let (code, _, err) = mandate(&url, ADMIN_KEY, &["revoke", "--key", "no-colon"]);
    assert_eq!(code, 1);
    assert!(err.contains("AGENT_ID:KID"), "{err}");

    // Exactly one target: none, two, or a reason with a key are usage errors.
    for args in [
        vec!["revoke"],
        vec!["revoke", "--agent", &a.id, "--human", &alice],
        vec!["revoke", "--token", "x", "--delegation", &mandate_id],
        vec!["revoke", "--key", &key_target, "--reason", "r"],
    ] {
        let (code, _, err) = mandate(&url, ADMIN_KEY, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    // Nothing above leaked the API key.
    let (_, out, err) = mandate(&url, ADMIN_KEY, &["delegation", "show", &mandate_id]);
    assert!(!out.contains(ADMIN_KEY) && !err.contains(ADMIN_KEY));
}

#[test]
fn keys_rotate_and_humans_register_signing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let url = server.url.clone();
    let alice = add_human(&url, "Alice");
    let a = add_agent(&url, dir.path(), &alice, "planner", 21);

    let (code, _, _) = mandate(
        &url,
        ADMIN_KEY,
        &["key", "add", "--agent", &a.id, "--overlap", "5"],
    );
    assert_eq!(code, 2, "--overlap needs --rotate");
    let saved = dir.path().join("rotated.jwk");
    let (code, out, err) = mandate(
        &url,
        ADMIN_KEY,
        &[
            "key",
            "add",
            "--agent",
            &a.id,
            "--rotate",
            "--overlap",
            "60",
            "--save-key",
            saved.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("not after"), "{out}");
    let keys = ok_json(&url, &["key", "list", "--agent", &a.id]);
    let keys = keys["items"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let old = keys.iter().find(|k| k["kid"] == a.key.kid()).unwrap();
    assert!(old["not_after"].is_string(), "{old}");

    let human_key = ServerKey::from_seed(&[22; 32]);
    let jwk_file = dir.path().join("alice.jwk");
    std::fs::write(&jwk_file, human_key.public().to_json().to_string()).unwrap();
    let jwk_arg = format!("@{}", jwk_file.display());
    let (code, out, err) = mandate(
        &url,
        ADMIN_KEY,
        &["human", "key", "add", &alice, "--jwk", &jwk_arg],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&human_key.kid()[..15]), "{out}");
    assert!(err.contains("human_signature"), "{err}");

    let rotation = ok_json(&url, &["server", "rotate-keys"]);
    assert!(rotation["current"].is_string() && rotation["next"].is_string());
    assert!(rotation["retiring"]["until"].is_string());
    let out = ok(&url, &["server", "rotate-keys"]);
    assert!(out.contains("retiring until"), "{out}");

    // `revoke --tenant` (operator owners only).
    let tenant = ok_json(
        &url,
        &[
            "tenant",
            "add",
            "--name",
            "acme",
            "--owner-name",
            "Olga",
            "--owner-email",
            "olga@acme.example",
        ],
    );
    let tenant_id = tenant["tenant"]["id"].as_str().unwrap().to_owned();
    let out = ok(
        &url,
        &["revoke", "--tenant", &tenant_id, "--reason", "closed"],
    );
    assert!(out.contains(&tenant_id) && out.contains("revoked"), "{out}");
}

/// Spawns `mandate [--json] events --last-event-id 0`; its stdout lines arrive on the channel.
fn follow_events(url: &str, json: bool) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut args = vec![];
    if json {
        args.push("--json");
    }
    args.extend(["events", "--last-event-id", "0"]);
    let mut child = Command::new(bin())
        .args(&args)
        .env("MANDATE_SERVER", url)
        .env("MANDATE_API_KEY", ADMIN_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line that satisfies `want`; returns every line seen.
fn wait_for(rx: &mpsc::Receiver<String>, want: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = want(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no matching event; saw {seen:?}");
}

#[test]
fn events_follow_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let url = server.url.clone();
    let alice = add_human(&url, "Alice");
    let a = add_agent(&url, dir.path(), &alice, "planner", 31);
    let (mut json_child, json_rx) = follow_events(&url, true);
    let (mut text_child, text_rx) = follow_events(&url, false);

    ok(&url, &["agent", "suspend", &a.id]);
    ok(&url, &["revoke", "--agent", &a.id, "--reason", "gone"]);

    let resource = format!("agents/{}", a.id);
    let seen = wait_for(&json_rx, |l| l.contains("agent.revoked"));
    let events: Vec<Value> = seen
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["agent.suspended", "agent.revoked"], "{seen:?}");
    let revoked = &events[1];
    assert!(revoked["id"].as_u64().unwrap() > events[0]["id"].as_u64().unwrap());
    assert_eq!(revoked["receipt"]["resource"], resource);
    assert_eq!(revoked["receipt"]["reasons"], json!(["gone"]));

    let seen = wait_for(&text_rx, |l| l.contains("agent.revoked"));
    let last = seen.last().unwrap();
    let parts: Vec<&str> = last.split(' ').collect();
    assert_eq!(parts.len(), 3, "{last}");
    assert_eq!(parts[0], revoked["id"].to_string());
    assert_eq!(parts[1], "agent.revoked");
    assert_eq!(parts[2], resource);

    for child in [&mut json_child, &mut text_child] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
