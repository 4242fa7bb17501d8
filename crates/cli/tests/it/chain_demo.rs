//! The delegation-chain demo of README.md ("Run it"), step by step against a real server:
//! human → agent A → sub-agent B with `mandate token redeem|delegate`, a widening refused with
//! `invalid_scope`, revocation of the mandate, and the ledger verified. The README must show
//! exactly these commands (checked at the end).

use std::path::Path;

use serde_json::Value;

use crate::proc::{ADMIN_KEY, ServerProcess, mandate};

/// The README's `scope` shell function: one `mandate` authorization detail on the CRM's tickets.
fn scope(actions: &str) -> String {
    format!(
        r#"{{"type":"mandate","actions":{actions},"locations":["https://crm.example.com"],"resources":["tickets/*"]}}"#
    )
}

/// The commands of the README demo, as typed there (continuation lines joined).
const README_COMMANDS: &[&str] = &[
    r#"alias mandate='cargo run --release -q --'"#,
    r#"field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }"#,
    r#"scope() { printf '{"type":"mandate","actions":%s,"locations":["https://crm.example.com"],"resources":["tickets/*"]}' "$1"; }"#,
    r#"ALICE=$(mandate --json human add --name Alice --email alice@example.com | field '["id"]')"#,
    r#"ALICE_KEY=$(mandate --json human api-key $ALICE | field '["api_key"]')"#,
    r#"A=$(mandate --json agent add --name triage-bot --owner $ALICE --purpose "triage support tickets" --ceiling "$(scope '["read","write","delete"]')" --save-key triage-bot.jwk | field '["agent"]["id"]')"#,
    r#"B=$(mandate --json agent add --name summarizer --owner $ALICE --purpose "summarize tickets" --ceiling "$(scope '["read","write","delete"]')" --save-key summarizer.jwk | field '["agent"]["id"]')"#,
    r#"M=$(MANDATE_API_KEY=$ALICE_KEY mandate --json mandate add --agent $A --authorization-details "$(scope '["read","write"]')" --purpose "triage the support queue" --save-document mandate.jwt | field '["id"]')"#,
    r#"mandate token redeem --key triage-bot.jwk --document mandate.jwt --save a-token.json"#,
    r#"mandate token delegate --key triage-bot.jwk --token a-token.json --to $B --to-key summarizer.jwk --authorization-details "$(scope '["read"]')" --save b-token.json"#,
    r#"mandate token show b-token.json"#,
    r#"mandate delegation tree $M"#,
    r#"mandate token delegate --key triage-bot.jwk --token a-token.json --to $B --to-key summarizer.jwk --authorization-details "$(scope '["read","delete"]')" --save c-token.json"#,
    r#"mandate delegation revoke $M --reason "task done""#,
    r#"mandate token redeem --key triage-bot.jwk --document mandate.jwt --save a-token-2.json"#,
    r#"mandate audit verify"#,
];

/// Runs a step; returns (exit code, stdout, stderr), and keeps every line printed.
fn step(url: &str, printed: &mut String, args: &[&str]) -> (i32, String, String) {
    let (code, out, err) = mandate(url, ADMIN_KEY, args);
    printed.push_str(&out);
    printed.push_str(&err);
    (code, out, err)
}

fn ok(url: &str, printed: &mut String, args: &[&str]) -> String {
    let (code, out, err) = step(url, printed, args);
    assert_eq!(code, 0, "mandate {args:?}: {err}");
    out
}

/// `--json` output of a step (the README's `field`).
fn ok_json(url: &str, printed: &mut String, args: &[&str]) -> Value {
    let out = ok(url, printed, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("mandate {args:?}: {e}: {out}"))
}

fn private_json(path: &Path) -> Value {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn human_agent_sub_agent_widening_refused_then_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let url = server.url.as_str();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let mut printed = String::new();
    let p = &mut printed;

    let alice = ok_json(
        url,
        p,
        &[
            "--json",
            "human",
            "add",
            "--name",
            "Alice",
            "--email",
            "alice@example.com",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice_key = ok_json(url, p, &["--json", "human", "api-key", &alice])["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let ceiling = scope(r#"["read","write","delete"]"#);
    let a = ok_json(
        url,
        p,
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
            &ceiling,
            "--save-key",
            &file("triage-bot.jwk"),
        ],
    )["agent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = ok_json(
        url,
        p,
        &[
            "--json",
            "agent",
            "add",
            "--name",
            "summarizer",
            "--owner",
            &alice,
            "--purpose",
            "summarize tickets",
            "--ceiling",
            &ceiling,
            "--save-key",
            &file("summarizer.jwk"),
        ],
    )["agent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Alice makes the mandate herself, with her own API key: she is the human at the root.
    let (code, out, err) = mandate(
        url,
        &alice_key,
        &[
            "--json",
            "mandate",
            "add",
            "--agent",
            &a,
            "--authorization-details",
            &scope(r#"["read","write"]"#),
            "--purpose",
            "triage the support queue",
            "--save-document",
            &file("mandate.jwt"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    p.push_str(&out);
    p.push_str(&err);
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["mandate"]["delegator"]["id"], alice.as_str());
    let m = created["id"].as_str().unwrap().to_owned();

    // Agent A redeems its mandate: a DPoP-bound token for A, on behalf of Alice.
    let out = ok(
        url,
        p,
        &[
            "token",
            "redeem",
            "--key",
            &file("triage-bot.jwk"),
            "--document",
            &file("mandate.jwt"),
            "--save",
            &file("a-token.json"),
        ],
    );
    assert!(out.contains(&a) && out.contains(&m), "{out}");
    assert!(out.contains(&format!("{alice} → {a}")), "{out}");
    assert!(out.contains("read write"), "{out}");
    assert!(out.contains("https://crm.example.com"), "{out}");
    let a_token = private_json(&dir.path().join("a-token.json"));
    assert_eq!(a_token["agent"], a.as_str());
    assert!(a_token["dpop_jwk"]["d"].is_string());
    assert!(a_token["expires_at"].is_string());

    // A delegates read-only to B; B's consent names a fresh key its token is bound to.
    let out = ok(
        url,
        p,
        &[
            "token",
            "delegate",
            "--key",
            &file("triage-bot.jwk"),
            "--token",
            &file("a-token.json"),
            "--to",
            &b,
            "--to-key",
            &file("summarizer.jwk"),
            "--authorization-details",
            &scope(r#"["read"]"#),
            "--save",
            &file("b-token.json"),
        ],
    );
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("sub-delegation del_") && first.ends_with(&format!("{a} → {b}")),
        "{out}"
    );
    let sub = first
        .trim_start_matches("sub-delegation ")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    assert!(out.contains(&format!("{alice} → {a} → {b}")), "{out}");
    let b_token = private_json(&dir.path().join("b-token.json"));
    assert_eq!(b_token["agent"], b.as_str());
    assert_ne!(b_token["dpop_jwk"], a_token["dpop_jwk"]);

    let shown = ok(url, p, &["token", "show", &file("b-token.json")]);
    assert!(shown.contains(&format!("{alice} → {a} → {b}")), "{shown}");
    assert!(shown.contains("matches cnf.jkt"), "{shown}");
    let shown = ok_json(url, p, &["--json", "token", "show", &file("b-token.json")]);
    let claims = &shown["claims"];
    assert_eq!(claims["client_id"], b.as_str());
    assert_eq!(claims["sub"], alice.as_str());
    assert_eq!(claims["del"], sub.as_str());
    assert_eq!(claims["dpt"], 2);
    assert_eq!(claims["scope"], "read");
    assert!(claims["act"]["sub"].as_str().unwrap().ends_with(&b));
    assert!(claims["act"]["act"]["sub"].as_str().unwrap().ends_with(&a));
    assert!(claims["status"]["status_list"]["uri"].is_string());
    assert_eq!(shown["chain"], serde_json::json!([alice, a, b]));
    assert_eq!(shown["dpop_key_matches"], true);
    assert_eq!(shown["expired"], false);

    // The tree: A's mandate, B's sub-delegation below it.
    let tree = ok(url, p, &["delegation", "tree", &m]);
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 2, "{tree}");
    assert!(lines[0].starts_with(&format!("{a} ({m})")), "{tree}");
    assert!(lines[0].contains("depth 1") && lines[0].contains("read, write"));
    assert!(lines[1].starts_with(&format!("└─ {b} ({sub})")), "{tree}");
    assert!(lines[1].contains("depth 2") && lines[1].contains("● active"));

    // Widening: `delete` is within B's ceiling but Alice never granted it to A.
    let (code, _, err) = step(
        url,
        p,
        &[
            "token",
            "delegate",
            "--key",
            &file("triage-bot.jwk"),
            "--token",
            &file("a-token.json"),
            "--to",
            &b,
            "--to-key",
            &file("summarizer.jwk"),
            "--authorization-details",
            &scope(r#"["read","delete"]"#),
            "--save",
            &file("c-token.json"),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("invalid_scope: ") && err.contains("delete"),
        "{err}"
    );
    assert!(!dir.path().join("c-token.json").exists());

    // Revoking the mandate cuts the tree; the document can no longer be redeemed.
    let out = ok(
        url,
        p,
        &["delegation", "revoke", &m, "--reason", "task done"],
    );
    assert!(out.contains("revoked 2 delegations"), "{out}");
    let (code, _, err) = step(
        url,
        p,
        &[
            "token",
            "redeem",
            "--key",
            &file("triage-bot.jwk"),
            "--document",
            &file("mandate.jwt"),
            "--save",
            &file("a-token-2.json"),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("invalid_grant: "), "{err}");
    assert!(!dir.path().join("a-token-2.json").exists());

    let out = ok(url, p, &["audit", "verify"]);
    assert!(out.starts_with("ledger ok"), "{out}");

    // No secret was ever printed: tokens, DPoP keys, agent keys, the delegation document.
    let mut secrets = vec![
        std::fs::read_to_string(dir.path().join("mandate.jwt"))
            .unwrap()
            .trim()
            .to_owned(),
    ];
    for token in [&a_token, &b_token] {
        secrets.push(token["access_token"].as_str().unwrap().to_owned());
        secrets.push(token["dpop_jwk"]["d"].as_str().unwrap().to_owned());
    }
    for key in ["triage-bot.jwk", "summarizer.jwk"] {
        secrets.push(
            private_json(&dir.path().join(key))["d"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for secret in secrets {
        assert!(!printed.contains(&secret), "a secret was printed");
    }
}

/// README.md shows exactly the commands run above.
#[test]
fn the_readme_shows_these_commands() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    // Join continuation lines and squeeze runs of spaces, as the shell reads them.
    let joined = readme.replace("\\\n", " ");
    let normal: String = joined
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    for command in README_COMMANDS {
        assert!(normal.contains(command), "README.md lacks: {command}");
    }
    assert_eq!(
        scope(r#"["read"]"#),
        r#"{"type":"mandate","actions":["read"],"locations":["https://crm.example.com"],"resources":["tickets/*"]}"#,
        "the test's scope() is the README's"
    );
}
