//! Unit tests of delegation terms, attenuation and the widening reasons.

use serde_json::{Value, json};

use super::*;

const NOW: i64 = 1_763_900_000_000;
const HOUR: i64 = 3_600_000;

fn root(max_depth: u8) -> DelegationTerms {
    let s = scope(json!([
        {"type": "mandate", "actions": ["read", "write"], "locations": ["https://a.example", "https://b.example"],
         "resources": ["tickets/*", "customers/**"], "constraints": {"max_amount": {"value": 100, "currency": "USD"}}},
        {"type": "mandate", "actions": ["execute"], "resources": ["jobs/*"]}
    ]));
    let prohibitions = Prohibitions::parse(
        &json!([{"actions": ["write"], "resources": ["customers/0/**"]}]),
        &limits(),
    )
    .unwrap();
    DelegationTerms::mandate(s, prohibitions, NOW + HOUR, max_depth, &limits()).unwrap()
}

fn ask(scope_value: Value, expires_at: Option<i64>) -> AttenuationRequest {
    AttenuationRequest {
        scope: scope(scope_value),
        extra_prohibitions: Prohibitions::none(),
        expires_at,
    }
}

fn widening_reason(parent: &DelegationTerms, value: Value) -> (usize, String) {
    match parent.attenuate(ask(value, None), NOW, false) {
        Err(ScopeError::Widening { detail, reason }) => (detail, reason),
        other => panic!("expected widening, got {other:?}"),
    }
}

#[test]
fn mandate_checks_max_depth() {
    let s = scope(json!([detail(json!({}))]));
    for bad in [0, 11] {
        assert_eq!(
            DelegationTerms::mandate(s.clone(), Prohibitions::none(), NOW, bad, &limits())
                .unwrap_err(),
            ScopeError::InvalidMaxDepth {
                max_depth: bad,
                cap: 10
            }
        );
    }
    let lowered = ScopeLimits {
        max_depth_hard_cap: 3,
        ..ScopeLimits::default()
    };
    assert!(DelegationTerms::mandate(s.clone(), Prohibitions::none(), NOW, 4, &lowered).is_err());
    let raised = ScopeLimits {
        max_depth_hard_cap: 50,
        ..ScopeLimits::default()
    };
    assert!(DelegationTerms::mandate(s.clone(), Prohibitions::none(), NOW, 11, &raised).is_err());
    let t = DelegationTerms::mandate(s, Prohibitions::none(), NOW, 10, &limits()).unwrap();
    assert_eq!((t.depth(), t.max_depth()), (1, 10));
}

#[test]
fn attenuate_success() {
    let parent = root(3);
    let mut request = ask(
        json!([{"type": "mandate", "actions": ["read"], "locations": ["https://a.example"],
                "resources": ["customers/42/**"],
                "constraints": {"max_amount": {"value": 10, "currency": "USD"}, "min_trust": 60}}]),
        Some(NOW + HOUR / 2),
    );
    request.extra_prohibitions = Prohibitions::parse(
        &json!([{"actions": ["read"], "resources": ["customers/42/secret"]}]),
        &limits(),
    )
    .unwrap();
    let child = parent.attenuate(request.clone(), NOW, true).unwrap();
    assert_eq!(child.scope(), &request.scope);
    assert_eq!(child.depth(), 2);
    assert_eq!(child.max_depth(), 3);
    assert_eq!(child.expires_at(), NOW + HOUR / 2);
    assert_eq!(child.prohibitions().len(), 2);
    assert!(child.prohibitions().includes(parent.prohibitions()));
    assert!(child.is_within(&parent));
    assert!(!parent.is_within(&child));
    assert!(!child.is_within(&child));
    // No expiry asked: the parent's is kept.
    let same_expiry = parent
        .attenuate(
            ask(
                json!([{"type": "mandate", "actions": ["execute"], "resources": ["jobs/1"]}]),
                None,
            ),
            NOW,
            true,
        )
        .unwrap();
    assert_eq!(same_expiry.expires_at(), parent.expires_at());
    // Terms round-trip through serde.
    let value = serde_json::to_value(&child).unwrap();
    assert_eq!(value["depth"], 2);
    let back: DelegationTerms = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(back, child);
    let mut bad = value.clone();
    bad["depth"] = json!(4);
    assert!(serde_json::from_value::<DelegationTerms>(bad).is_err());
    let mut bad = value;
    bad["max_depth"] = json!(11);
    assert!(serde_json::from_value::<DelegationTerms>(bad).is_err());
}

#[test]
fn attenuate_errors() {
    let parent = root(3);
    let inside = json!([{"type": "mandate", "actions": ["execute"], "resources": ["jobs/1"]}]);
    assert_eq!(
        parent
            .attenuate(ask(inside.clone(), None), NOW + HOUR, false)
            .unwrap_err(),
        ScopeError::ParentExpired {
            expires_at: NOW + HOUR,
            now: NOW + HOUR
        }
    );
    assert_eq!(
        parent
            .attenuate(ask(inside.clone(), Some(NOW + HOUR + 1)), NOW, false)
            .unwrap_err(),
        ScopeError::ExpiryExtended {
            requested: NOW + HOUR + 1,
            parent: NOW + HOUR
        }
    );
    assert_eq!(
        parent
            .attenuate(ask(inside.clone(), Some(NOW)), NOW, false)
            .unwrap_err(),
        ScopeError::AlreadyExpired {
            expires_at: NOW,
            now: NOW
        }
    );
    // Equal scope: fine unless strict.
    let equal = serde_json::to_value(parent.scope()).unwrap();
    assert!(
        parent
            .attenuate(ask(equal.clone(), None), NOW, false)
            .is_ok()
    );
    assert_eq!(
        parent.attenuate(ask(equal, None), NOW, true).unwrap_err(),
        ScopeError::NotStrict
    );
    // Depth: max_depth 2 allows one hop below the mandate, not two.
    let parent2 = root(2);
    let child = parent2
        .attenuate(ask(inside.clone(), None), NOW, false)
        .unwrap();
    assert_eq!(
        child
            .attenuate(ask(inside.clone(), None), NOW, false)
            .unwrap_err(),
        ScopeError::DepthExceeded {
            depth: 3,
            max_depth: 2
        }
    );
    assert!(matches!(
        root(1).attenuate(ask(inside, None), NOW, false),
        Err(ScopeError::DepthExceeded {
            depth: 2,
            max_depth: 1
        })
    ));
}

#[test]
fn widening_reasons() {
    let parent = root(3);
    let cases = [
        (
            json!({"actions": ["delete"], "resources": ["jobs/1"]}),
            "action `delete` not granted by any parent detail",
        ),
        (
            json!({"actions": ["read", "execute"], "locations": ["https://a.example"], "resources": ["jobs/1"]}),
            "no single parent detail grants all the requested actions",
        ),
        (
            json!({"actions": ["read"], "resources": ["tickets/1"]}),
            "any location requested but the parent details that grant these actions name their locations",
        ),
        (
            json!({"actions": ["read"], "locations": ["https://c.example"], "resources": ["tickets/1"]}),
            "location `https://c.example` not granted with these actions by any parent detail",
        ),
        (
            json!({"actions": ["execute"], "locations": ["https://c.example"], "resources": ["tickets/1"]}),
            "resource `tickets/1` not covered with these actions and locations by any parent detail",
        ),
        (
            json!({"actions": ["read"], "locations": ["https://a.example"], "resources": ["tickets/*/x"]}),
            "resource `tickets/*/x` not covered with these actions and locations by any parent detail",
        ),
        (
            json!({"actions": ["read"], "locations": ["https://a.example"], "resources": ["tickets/1"]}),
            "constraint `max_amount` is missing or looser than the parent's",
        ),
        (
            json!({"actions": ["read"], "locations": ["https://a.example"], "resources": ["tickets/1"],
                   "constraints": {"max_amount": {"value": 1, "currency": "EUR"}}}),
            "constraint `max_amount` is missing or looser than the parent's",
        ),
    ];
    for (value, expected) in cases {
        let mut d = value.clone();
        d["type"] = json!("mandate");
        let ok = json!({"type": "mandate", "actions": ["execute"], "resources": ["jobs/1"]});
        let (detail, reason) = widening_reason(&parent, json!([ok, d]));
        assert_eq!(detail, 1, "{value}");
        assert_eq!(reason, expected, "{value}");
    }
    // A detail is judged against single parent details, never a combination.
    let split = DelegationTerms::mandate(
        scope(json!([
            {"type": "mandate", "actions": ["read"], "resources": ["a"]},
            {"type": "mandate", "actions": ["read"], "resources": ["b"]}
        ])),
        Prohibitions::none(),
        NOW + HOUR,
        3,
        &limits(),
    )
    .unwrap();
    let (_, reason) = widening_reason(
        &split,
        json!([{"type": "mandate", "actions": ["read"], "resources": ["a", "b"]}]),
    );
    assert_eq!(
        reason,
        "no single parent detail grants all the requested resources"
    );
    let err = parent
        .attenuate(
            ask(
                json!([{"type": "mandate", "actions": ["delete"], "resources": ["x"]}]),
                None,
            ),
            NOW,
            false,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "requested authorization detail 0 is wider than the parent scope: action `delete` not granted by any parent detail"
    );
}

#[test]
fn scope_order_basics() {
    let a =
        scope(json!([{"type": "mandate", "actions": ["read", "write"], "resources": ["x/**"]}]));
    let b = scope(json!([{"type": "mandate", "actions": ["read"], "resources": ["x/*"]}]));
    assert!(a.is_within(&a));
    assert!(b.is_within(&a));
    assert!(!a.is_within(&b));
    assert_eq!(a.narrow(b.clone()).unwrap(), b);
    // A detail is not covered by a combination of parent details.
    let split = scope(json!([
        {"type": "mandate", "actions": ["read"], "resources": ["x"]},
        {"type": "mandate", "actions": ["write"], "resources": ["x"]}
    ]));
    let joined =
        scope(json!([{"type": "mandate", "actions": ["read", "write"], "resources": ["x"]}]));
    assert!(!joined.is_within(&split));
    assert!(split.is_within(&joined));
    // Locations: absent is widest.
    let anywhere = scope(json!([{"type": "mandate", "actions": ["read"], "resources": ["x"]}]));
    let somewhere = scope(
        json!([{"type": "mandate", "actions": ["read"], "locations": ["https://a.example"], "resources": ["x"]}]),
    );
    assert!(somewhere.is_within(&anywhere));
    assert!(!anywhere.is_within(&somewhere));
    let detail = AuthorizationDetail::new(
        BTreeSet::from([Action::new("read").unwrap()]),
        None,
        BTreeSet::from([pattern("x")]),
        Constraints::none(),
    )
    .unwrap();
    assert_eq!(Scope::new(vec![detail]).unwrap(), anywhere);
    assert_eq!(
        Scope::new(vec![]).unwrap_err(),
        ScopeError::Empty {
            field: "authorization_details"
        }
    );
}
