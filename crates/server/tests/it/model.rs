//! Model-based test: random sequences of mandate / exchange / revoke / suspend / resume /
//! expire run against the real server and a tiny in-memory model. After every step, the set of
//! active tokens (by introspection) equals the model's, and DESIGN §12 invariants 2–5 hold for
//! every active token.

use std::collections::HashMap;

use ed25519_dalek::SigningKey;
use mandate_core::clock::Clock;
use mandate_core::jose::{self, Algorithm, JwtKind};
use mandate_core::scope::Scope;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::harness::ADMIN_KEY;
use crate::tokens::{BEARER, CRM, Dpop, EXCHANGE, Holder, World, nonce, register_agent, world};

const AGENTS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    /// A human mandate to agent `a`, valid `ttl` seconds, redeemed at once.
    Mandate {
        a: usize,
        ttl: i64,
        narrow: bool,
    },
    /// The holder of token `t` delegates to agent `a`.
    Exchange {
        t: usize,
        a: usize,
        narrow: bool,
    },
    /// The holder revokes token `t`.
    RevokeToken {
        t: usize,
    },
    /// An admin revokes the delegation of token `t` (and its subtree).
    RevokeDelegation {
        t: usize,
    },
    Suspend {
        a: usize,
    },
    Resume {
        a: usize,
    },
    RevokeAgent {
        a: usize,
    },
    /// Time passes.
    Expire {
        secs: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let a = 0..AGENTS;
    let t = 0usize..12;
    prop_oneof![
        3 => (a.clone(), prop_oneof![Just(120i64), Just(900)], any::<bool>()).prop_map(|(a, ttl, narrow)| Op::Mandate { a, ttl, narrow }),
        4 => (t.clone(), a.clone(), any::<bool>()).prop_map(|(t, a, narrow)| Op::Exchange { t, a, narrow }),
        1 => t.clone().prop_map(|t| Op::RevokeToken { t }),
        1 => t.prop_map(|t| Op::RevokeDelegation { t }),
        1 => a.clone().prop_map(|a| Op::Suspend { a }),
        1 => a.clone().prop_map(|a| Op::Resume { a }),
        1 => a.prop_map(|a| Op::RevokeAgent { a }),
        1 => prop_oneof![Just(60i64), Just(200)].prop_map(|secs| Op::Expire { secs }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum St {
    Active,
    Suspended,
    Revoked,
}

struct MDelegation {
    parent: Option<usize>,
    delegate: usize,
    expires_ms: i64,
    revoked: bool,
    depth: u8,
}

struct MToken {
    token: String,
    dpop: Dpop,
    delegation: usize,
    holder: usize,
    expires_ms: i64,
    revoked: bool,
    /// Server-side delegation id, for admin revocation.
    del_id: String,
}

struct Model {
    agents: Vec<St>,
    delegations: Vec<MDelegation>,
    tokens: Vec<MToken>,
}

impl Model {
    fn chain(&self, d: usize) -> Vec<usize> {
        let mut out = vec![d];
        let mut cur = d;
        while let Some(p) = self.delegations[cur].parent {
            out.push(p);
            cur = p;
        }
        out
    }

    fn token_active(&self, t: &MToken, now: i64) -> bool {
        !t.revoked
            && t.expires_ms > now
            && self.chain(t.delegation).iter().all(|&d| {
                let d = &self.delegations[d];
                !d.revoked && d.expires_ms > now && self.agents[d.delegate] == St::Active
            })
    }

    fn revoke_subtree(&mut self, d: usize) {
        for i in 0..self.delegations.len() {
            if self.chain(i).contains(&d) {
                self.delegations[i].revoked = true;
            }
        }
    }
}

fn scope(narrow: bool) -> Value {
    let resources = if narrow {
        json!(["tickets/7"])
    } else {
        json!(["tickets/*"])
    };
    json!([{"type": "mandate", "actions": ["read"], "locations": [CRM], "resources": resources}])
}

fn exp_of(token: &str) -> i64 {
    let c: Value = serde_json::from_slice(
        &mandate_core::encoding::b64url_decode(token.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    c["exp"].as_i64().unwrap() * 1000
}

async fn run(ops: Vec<Op>) {
    let w: World = world().await;
    let me = w.s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut agents: Vec<Holder> = Vec::new();
    for i in 0..AGENTS {
        agents.push(register_agent(&w.s, &me, &format!("m{i}"), 200 + i as u8).await);
    }
    let mut m = Model {
        agents: vec![St::Active; AGENTS],
        delegations: vec![],
        tokens: vec![],
    };
    let mut seed = 0u8;
    let mut next_dpop = || {
        seed = seed.wrapping_add(1);
        Dpop {
            key: SigningKey::from_bytes(&[seed ^ 0x5a; 32]),
        }
    };
    for op in ops {
        let now = w.s.clock.now_ms();
        match op {
            Op::Mandate { a, ttl, narrow } => {
                let r = w.s.post("/v1/mandates", ADMIN_KEY, json!({"agent": agents[a].id, "authorization_details": scope(narrow), "expires_in": ttl, "purpose": "model"})).await;
                if m.agents[a] != St::Active {
                    assert_eq!(r.status, 409, "{op:?}: {:?}", r.body);
                    continue;
                }
                assert_eq!(r.status, 201, "{op:?}: {:?}", r.body);
                let doc = r.body["delegation"].as_str().unwrap().to_owned();
                let del_id = r.body["id"].as_str().unwrap().to_owned();
                m.delegations.push(MDelegation {
                    parent: None,
                    delegate: a,
                    expires_ms: (now / 1000 + ttl) * 1000,
                    revoked: false,
                    depth: 1,
                });
                let dpop = next_dpop();
                let assertion = agents[a].assertion(&w.s, json!({}));
                let p = dpop.proof(&w.s, "POST", "/oauth2/token", json!({}));
                let (status, _, body) = w.redeem_with(&assertion, &doc, Some(&p), &[]).await;
                assert_eq!(status, 200, "{op:?}: {body:?}");
                let token = body["access_token"].as_str().unwrap().to_owned();
                let expires_ms = exp_of(&token);
                m.tokens.push(MToken {
                    token,
                    dpop,
                    delegation: m.delegations.len() - 1,
                    holder: a,
                    expires_ms,
                    revoked: false,
                    del_id,
                });
            }
            Op::Exchange { t, a, narrow } => {
                let Some(tok) = m.tokens.get(t) else { continue };
                let (holder, parent, depth) = (
                    tok.holder,
                    tok.delegation,
                    m.delegations[tok.delegation].depth,
                );
                let expect_ok = m.token_active(tok, now)
                    && m.agents[a] == St::Active
                    && a != holder
                    && depth < 3;
                let consent = jose::sign(
                    JwtKind::ActorToken,
                    Some(&agents[a].kid()),
                    Algorithm::EdDSA,
                    &json!({"iss": agents[a].id, "sub": agents[a].id, "aud": w.s.running.issuer, "exp": now / 1000 + 60, "jti": nonce(), "delegator": agents[holder].id}),
                    &agents[a].key,
                );
                let assertion = agents[holder].assertion(&w.s, json!({"jti": nonce()}));
                let p = tok.dpop.proof(&w.s, "POST", "/oauth2/token", json!({}));
                let details = scope(narrow).to_string();
                let (status, _, body) =
                    w.s.form(
                        "/oauth2/token",
                        &[
                            ("grant_type", EXCHANGE),
                            ("subject_token", &tok.token),
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
                        Some(&p),
                    )
                    .await;
                // Narrowing a narrow parent back to `tickets/*` is a widening: refused.
                let parent_narrow = tok_is_narrow(tok);
                // Narrowing a narrow parent back to `tickets/*` widens it.
                let expect_ok = expect_ok && (narrow || !parent_narrow);
                if !expect_ok {
                    assert_ne!(status, 200, "{op:?} must fail: {body:?}");
                    continue;
                }
                assert_eq!(status, 200, "{op:?}: {body:?}");
                let token = body["access_token"].as_str().unwrap().to_owned();
                let del_id = body["delegation"].as_str().unwrap().to_owned();
                let parent_exp = m.delegations[parent].expires_ms;
                m.delegations.push(MDelegation {
                    parent: Some(parent),
                    delegate: a,
                    expires_ms: parent_exp,
                    revoked: false,
                    depth: depth + 1,
                });
                // The sub-agent's token is bound to its registered key (no cnf in the consent).
                let expires_ms = exp_of(&token);
                m.tokens.push(MToken {
                    token,
                    dpop: Dpop {
                        key: agents[a].key.clone(),
                    },
                    delegation: m.delegations.len() - 1,
                    holder: a,
                    expires_ms,
                    revoked: false,
                    del_id,
                });
            }
            Op::RevokeToken { t } => {
                let Some(tok) = m.tokens.get(t) else { continue };
                let jti = {
                    let c: Value = serde_json::from_slice(
                        &mandate_core::encoding::b64url_decode(
                            tok.token.split('.').nth(1).unwrap(),
                        )
                        .unwrap(),
                    )
                    .unwrap();
                    c["jti"].as_str().unwrap().to_owned()
                };
                let r =
                    w.s.post(&format!("/v1/tokens/{jti}/revoke"), ADMIN_KEY, json!({}))
                        .await;
                assert_eq!(r.status, 200, "{op:?}: {:?}", r.body);
                m.tokens[t].revoked = true;
            }
            Op::RevokeDelegation { t } => {
                let Some(tok) = m.tokens.get(t) else { continue };
                let d = tok.delegation;
                let r =
                    w.s.post(
                        &format!("/v1/delegations/{}/revoke", tok.del_id),
                        ADMIN_KEY,
                        json!({}),
                    )
                    .await;
                if m.delegations[d].revoked {
                    assert_eq!(r.status, 409, "{op:?}");
                } else {
                    assert_eq!(r.status, 200, "{op:?}: {:?}", r.body);
                    m.revoke_subtree(d);
                }
            }
            Op::Suspend { a } | Op::Resume { a } | Op::RevokeAgent { a } => {
                let (path, ok, to) = match (&op, m.agents[a]) {
                    (Op::Suspend { .. }, St::Active) => ("suspend", true, St::Suspended),
                    (Op::Suspend { .. }, s) => ("suspend", false, s),
                    (Op::Resume { .. }, St::Suspended) => ("resume", true, St::Active),
                    (Op::Resume { .. }, s) => ("resume", false, s),
                    (_, St::Revoked) => ("revoke", false, St::Revoked),
                    _ => ("revoke", true, St::Revoked),
                };
                let r =
                    w.s.post(
                        &format!("/v1/agents/{}/{path}", agents[a].id),
                        ADMIN_KEY,
                        json!({}),
                    )
                    .await;
                assert_eq!(r.status == 200, ok, "{op:?}: {:?}", r.body);
                m.agents[a] = to;
                if matches!(op, Op::RevokeAgent { .. }) && ok {
                    let to_agent: Vec<usize> = (0..m.delegations.len())
                        .filter(|&i| m.delegations[i].delegate == a)
                        .collect();
                    for d in to_agent {
                        m.revoke_subtree(d);
                    }
                }
            }
            Op::Expire { secs } => w.s.clock.advance(secs * 1000),
        }
        check(&w, &m).await;
    }
}

fn tok_is_narrow(tok: &MToken) -> bool {
    let c: Value = serde_json::from_slice(
        &mandate_core::encoding::b64url_decode(tok.token.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    c["authorization_details"][0]["resources"] == json!(["tickets/7"])
}

async fn check(w: &World, m: &Model) {
    let now = w.s.clock.now_ms();
    let mut seen: HashMap<String, bool> = HashMap::new();
    for t in &m.tokens {
        let info = w.introspect(&t.token).await;
        let active = info["active"] == true;
        assert_eq!(
            active,
            m.token_active(t, now),
            "token of delegation {} disagrees: {info:#}",
            t.delegation
        );
        seen.insert(t.token.clone(), active);
        if !active {
            assert_eq!(info, json!({"active": false}));
            continue;
        }
        // Invariant 2: the chain starts at a human mandate of the same tenant.
        let chain = info["delegation_chain"].as_array().unwrap();
        assert_eq!(chain[0]["delegator"]["type"], "human");
        assert!(chain.iter().all(|d| d["tenant"] == info["tnt"]));
        // Invariants 3 and 4: scope within the parent's, prohibitions kept, expiry not later,
        // depth = parent + 1 ≤ max_depth ≤ 10.
        for pair in chain.windows(2) {
            let (p, c) = (&pair[0], &pair[1]);
            let ps: Scope = serde_json::from_value(p["authorization_details"].clone()).unwrap();
            let cs: Scope = serde_json::from_value(c["authorization_details"].clone()).unwrap();
            assert!(cs.is_within(&ps), "child scope is wider than its parent's");
            assert!(c["expires_at"].as_str().unwrap() <= p["expires_at"].as_str().unwrap());
            assert_eq!(
                c["depth"].as_u64().unwrap(),
                p["depth"].as_u64().unwrap() + 1
            );
            for pro in p["prohibitions"].as_array().unwrap() {
                assert!(c["prohibitions"].as_array().unwrap().contains(pro));
            }
        }
        let last = chain.last().unwrap();
        assert!(last["depth"].as_u64().unwrap() <= last["max_depth"].as_u64().unwrap());
        assert!(last["max_depth"].as_u64().unwrap() <= 10);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn server_agrees_with_the_model(ops in prop::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
