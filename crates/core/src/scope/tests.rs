//! Unit tests of parsing, matching, containment, evaluation and attenuation.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;

mod attenuation;

/// A predicate on an expected error.
type Check = fn(&ScopeError) -> bool;

fn limits() -> ScopeLimits {
    ScopeLimits::default()
}

fn scope(value: Value) -> Scope {
    Scope::parse(&value, &limits()).unwrap()
}

fn scope_err(value: Value) -> ScopeError {
    Scope::parse(&value, &limits()).unwrap_err()
}

fn detail(extra: Value) -> Value {
    let mut base = json!({"type": "mandate", "actions": ["read"], "resources": ["a"]});
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn pattern(s: &str) -> ResourcePattern {
    ResourcePattern::parse(s).unwrap()
}

fn path(s: &str) -> ResourcePath {
    ResourcePath::parse(s).unwrap()
}

fn request(action: &str, location: Option<&str>, resource: &str) -> AccessRequest {
    AccessRequest {
        action: Action::new(action).unwrap(),
        location: location.map(|l| Location::parse(l).unwrap()),
        resource: path(resource),
    }
}

fn constraints(value: Value) -> Constraints {
    let s = scope(json!([detail(json!({"constraints": value}))]));
    s.details()[0].constraints().clone()
}

// ---------------------------------------------------------------- actions

#[test]
fn action_names() {
    for ok in [
        "read",
        "a",
        "x1",
        "files.read",
        "run_job-2",
        &"a".repeat(32),
    ] {
        assert_eq!(Action::new(ok).unwrap().as_str(), ok);
    }
    for bad in [
        "",
        "Read",
        "1read",
        "_x",
        "re ad",
        "ré",
        &"a".repeat(33),
        "read\n",
    ] {
        assert!(
            matches!(Action::new(bad), Err(ScopeError::InvalidActionName { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn unknown_actions_are_rejected_at_input() {
    let err = scope_err(json!([detail(json!({"actions": ["frobnicate"]}))]));
    assert_eq!(
        err,
        ScopeError::UnknownAction {
            name: "frobnicate".into()
        }
    );
    assert_eq!(err.to_string(), "unknown action `frobnicate`");
    let err = scope_err(json!([detail(json!({"actions": ["Read"]}))]));
    assert!(matches!(err, ScopeError::InvalidActionName { .. }));
    // Also inside constraints and prohibitions.
    let err = scope_err(json!([detail(
        json!({"constraints": {"approval_required_for": ["nuke"]}})
    )]));
    assert!(matches!(err, ScopeError::UnknownAction { .. }));
    let err = Prohibitions::parse(
        &json!([{"actions": ["nuke"], "resources": ["**"]}]),
        &limits(),
    )
    .unwrap_err();
    assert!(matches!(err, ScopeError::UnknownAction { .. }));
}

#[test]
fn vocabulary_is_extensible() {
    let vocabulary = ActionVocabulary::new(["read", "approve", "approve"]).unwrap();
    assert_eq!(vocabulary.iter().count(), 2);
    let limits = ScopeLimits {
        vocabulary,
        ..ScopeLimits::default()
    };
    let value = json!([detail(json!({"actions": ["approve"]}))]);
    assert!(Scope::parse(&value, &limits).is_ok());
    let value = json!([detail(json!({"actions": ["write"]}))]);
    assert!(matches!(
        Scope::parse(&value, &limits),
        Err(ScopeError::UnknownAction { .. })
    ));
    assert_eq!(
        ActionVocabulary::new(Vec::<String>::new()),
        Err(ScopeError::EmptyVocabulary)
    );
    assert!(ActionVocabulary::new(["ok", "Bad"]).is_err());
    let default: Vec<String> = ActionVocabulary::default().into();
    assert_eq!(default, ["delete", "execute", "read", "write"]);
    // serde of stored data accepts any well-formed name.
    let stored: Scope =
        serde_json::from_value(json!([detail(json!({"actions": ["approve"]}))])).unwrap();
    assert_eq!(stored.details()[0].actions().len(), 1);
}

// ---------------------------------------------------------------- locations

#[test]
fn locations_normalise_scheme_host_and_root_path() {
    let cases = [
        ("https://crm.example.com", "https://crm.example.com"),
        ("HTTPS://CRM.Example.COM/", "https://crm.example.com"),
        (
            "https://crm.example.com/Api/",
            "https://crm.example.com/Api/",
        ),
        ("http://localhost:8080/x?y=Z", "http://localhost:8080/x?y=Z"),
        ("https://[::1]:8443/", "https://[::1]:8443"),
        ("https://a.example/?q=1", "https://a.example?q=1"),
    ];
    for (input, normal) in cases {
        assert_eq!(Location::parse(input).unwrap().as_str(), normal, "{input}");
    }
    assert_eq!(
        Location::parse("https://A.example/").unwrap(),
        Location::parse("https://a.example").unwrap()
    );
    assert_ne!(
        Location::parse("https://a.example/x").unwrap(),
        Location::parse("https://a.example/X").unwrap()
    );
}

#[test]
fn locations_rejected() {
    let long = format!("https://a.example/{}", "x".repeat(2048));
    for bad in [
        "ftp://a.example",
        "urn:example:a",
        "https://user@a.example",
        "https://user:pw@a.example/",
        "https://a.example/#frag",
        "https://a.example#",
        "https:///path",
        "https://",
        "https://a.example:",
        "https://a.example:99999",
        "https://a.example:8x",
        "https://a_b.example",
        "https://a.example/ x",
        "https://exämple.com",
        "//a.example",
        "a.example",
        "https://[zz]/",
        long.as_str(),
    ] {
        assert!(
            matches!(
                Location::parse(bad),
                Err(ScopeError::InvalidLocation { .. })
            ),
            "{bad:?}"
        );
    }
    let err = scope_err(json!([detail(
        json!({"locations": ["https://u@a.example"]})
    )]));
    assert_eq!(
        err.to_string(),
        "invalid location `https://u@a.example`: must not have userinfo"
    );
}

// ---------------------------------------------------------------- resources

#[test]
fn resource_rejections_name_the_problem() {
    use ScopeError as E;
    let cases: [(&str, Check); 26] = [
        ("", |e| *e == E::EmptyResource),
        ("/", |e| *e == E::EmptyResource),
        ("a//b", |e| matches!(e, E::EmptySegment { .. })),
        ("a/", |e| matches!(e, E::EmptySegment { .. })),
        ("//a", |e| matches!(e, E::EmptySegment { .. })),
        ("a/../b", |e| matches!(e, E::DotSegment { .. })),
        ("./a", |e| matches!(e, E::DotSegment { .. })),
        ("a/..", |e| matches!(e, E::DotSegment { .. })),
        ("a/%2E%2E/b", |e| matches!(e, E::DotSegment { .. })),
        ("a/%2e", |e| matches!(e, E::DotSegment { .. })),
        ("a%2Fb", |e| matches!(e, E::EncodedSeparator { .. })),
        ("a%2fb", |e| matches!(e, E::EncodedSeparator { .. })),
        ("a%5Cb", |e| matches!(e, E::EncodedSeparator { .. })),
        ("a\\b", |e| matches!(e, E::EncodedSeparator { .. })),
        ("a%252Fb", |e| matches!(e, E::DoubleEncoding { .. })),
        ("a%2525", |e| matches!(e, E::DoubleEncoding { .. })),
        ("a%25", |e| matches!(e, E::DoubleEncoding { .. })),
        ("a%zz", |e| matches!(e, E::InvalidPercentEncoding { .. })),
        ("a%2", |e| matches!(e, E::InvalidPercentEncoding { .. })),
        ("a%", |e| matches!(e, E::InvalidPercentEncoding { .. })),
        ("a%FF", |e| matches!(e, E::InvalidPercentEncoding { .. })),
        ("a%00", |e| matches!(e, E::ControlCharacter { .. })),
        ("a\tb", |e| matches!(e, E::ControlCharacter { .. })),
        ("a%7F", |e| matches!(e, E::ControlCharacter { .. })),
        ("a*b", |e| matches!(e, E::WildcardInLiteral { .. })),
        ("**/a", |e| matches!(e, E::MisplacedWildcard { .. })),
    ];
    for (input, check) in cases {
        let err = ResourcePattern::parse(input).unwrap_err();
        assert!(check(&err), "{input:?}: {err:?}");
    }
    for input in ["a/***", "%2A", "a/%2a/b", "a/b*"] {
        assert!(
            matches!(
                ResourcePattern::parse(input),
                Err(ScopeError::WildcardInLiteral { .. })
            ),
            "{input:?}"
        );
    }
    for input in ["*", "a/**", "a/b*", "%2A"] {
        assert!(
            matches!(
                ResourcePath::parse(input),
                Err(ScopeError::WildcardInPath { .. })
            ),
            "{input:?}"
        );
    }
    let too_many = vec!["a"; 33].join("/");
    assert!(matches!(
        ResourcePattern::parse(&too_many),
        Err(ScopeError::TooManySegments { max: 32, .. })
    ));
    assert!(ResourcePattern::parse(&vec!["a"; 32].join("/")).is_ok());
    assert!(matches!(
        ResourcePath::parse(&"x".repeat(256)),
        Err(ScopeError::SegmentTooLong { max: 255, .. })
    ));
    assert!(ResourcePath::parse(&"x".repeat(255)).is_ok());
    // 255 bytes once decoded is fine even if the raw text is longer.
    assert!(ResourcePath::parse(&"%41".repeat(255)).is_ok());
}

#[test]
fn resource_messages() {
    let err = ResourcePattern::parse("a/%2Fb").unwrap_err();
    assert_eq!(
        err.to_string(),
        "resource `a/%2Fb` has a `/` or `\\` inside a segment"
    );
    let err = ResourcePattern::parse("a\nb").unwrap_err();
    assert_eq!(
        err.to_string(),
        "resource `a\\u{a}b` has a control character"
    );
}

#[test]
fn resources_normalise_once() {
    assert_eq!(path("/a/b"), path("a/b"));
    assert_eq!(path("%41/b"), path("A/b"));
    assert_eq!(path("caf%C3%A9"), path("café"));
    // NFD and NFC spellings are the same resource.
    assert_eq!(path("cafe\u{301}"), path("caf\u{e9}"));
    assert_eq!(pattern("cafe%CC%81/*"), pattern("caf\u{e9}/*"));
    assert_eq!(path("cafe\u{301}").to_string(), "caf\u{e9}");
    // `.` inside a segment is an ordinary character.
    assert_eq!(path("a.b/...").to_string(), "a.b/...");
    // Serialized forms parse back to the same value.
    for input in ["/a/*/**", "**", "*", "a%20b/c", "x/y%3Fz", "é/ü"] {
        let p = pattern(input);
        assert_eq!(pattern(&p.to_string()), p, "{input}");
    }
    assert_eq!(pattern("/a/*/**").to_string(), "a/*/**");
    assert_eq!(pattern("a%20b").to_string(), "a b");
}

#[test]
fn matching() {
    let p = pattern("customers/42/**");
    assert!(p.matches(&path("customers/42")));
    assert!(p.matches(&path("customers/42/a")));
    assert!(p.matches(&path("customers/42/a/b")));
    assert!(!p.matches(&path("customers/43")));
    assert!(!p.matches(&path("customers")));
    let p = pattern("tickets/*");
    assert!(p.matches(&path("tickets/1")));
    assert!(!p.matches(&path("tickets")));
    assert!(!p.matches(&path("tickets/1/2")));
    let all = pattern("**");
    assert_eq!(all, ResourcePattern::everything());
    for x in ["a", "a/b/c", "*x"] {
        if let Ok(p) = ResourcePath::parse(x) {
            assert!(all.matches(&p));
        }
    }
    assert!(pattern("*/b").matches(&path("zz/b")));
    assert!(!pattern("a").matches(&path("A")));
}

#[test]
fn containment() {
    let yes = [
        ("a", "a"),
        ("*", "a"),
        ("*", "*"),
        ("**", "a/b/*/**"),
        ("**", "**"),
        ("a/**", "a"),
        ("a/**", "a/**"),
        ("a/**", "a/*/c/**"),
        ("*/b", "a/b"),
        ("a/*/**", "a/b"),
        ("a/*/**", "a/b/**"),
    ];
    let no = [
        ("a", "*"),
        ("a", "b"),
        ("a", "a/b"),
        ("a", "a/**"),
        ("a/*", "a/**"),
        ("a/b/**", "a/**"),
        ("a/b/**", "a"),
        ("a/*/**", "a"),
        ("a/*/**", "a/**"),
        ("*", "**"),
        ("a/**", "b"),
        ("a/**", "*/b"),
    ];
    for (p, c) in yes {
        assert!(pattern(p).contains(&pattern(c)), "{p} ⊇ {c}");
    }
    for (p, c) in no {
        assert!(!pattern(p).contains(&pattern(c)), "{p} ⊉ {c}");
    }
}

// ---------------------------------------------------------------- constraints

#[test]
fn constraints_parse_and_serialize_canonically() {
    let c = constraints(json!({
        "max_amount": {"value": 100, "currency": "USD"},
        "time_window": {"days": "fri,mon-wed,thu,sat", "start": "09:00", "end": "24:00", "tz": "Europe/Berlin"},
        "approval_required_for": ["delete", "write", "delete"],
        "rate": {"max": 60, "per_seconds": 60},
        "min_trust": 50
    }));
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({
            "max_amount": {"value": 100, "currency": "USD"},
            "time_window": {"days": "mon-sat", "start": "09:00", "end": "24:00", "tz": "Europe/Berlin"},
            "approval_required_for": ["delete", "write"],
            "rate": {"max": 60, "per_seconds": 60},
            "min_trust": 50
        })
    );
    let c = constraints(json!({"max_amount": {"value": 12.5, "currency": "EUR"}}));
    assert_eq!(c.max_amount().unwrap().value().get(), 12.5);
    assert_eq!(
        serde_json::to_string(&c).unwrap(),
        r#"{"max_amount":{"value":12.5,"currency":"EUR"}}"#
    );
    let days = constraints(
        json!({"time_window": {"days": "mon,wed,fri,sun", "start": "00:00", "end": "00:01", "tz": "UTC"}}),
    );
    let window = days.time_window().unwrap();
    assert_eq!(window.days().to_string(), "mon,wed,fri,sun");
    assert!(window.days().contains(Weekday::Sun));
    assert!(!window.days().contains(Weekday::Tue));
    assert_eq!(window.end().minutes(), 1);
    // An empty approval list is the same as none.
    assert!(constraints(json!({"approval_required_for": []})).is_empty());
    assert!(constraints(json!({})).is_empty());
}

#[test]
fn constraint_rejections() {
    let bad = [
        (
            json!({"max_amount": {"value": -1, "currency": "USD"}}),
            "max_amount",
        ),
        (
            json!({"max_amount": {"value": 9007199254740993.0_f64 * 2.0, "currency": "USD"}}),
            "max_amount",
        ),
        (
            json!({"max_amount": {"value": 1, "currency": "usd"}}),
            "max_amount",
        ),
        (
            json!({"max_amount": {"value": 1, "currency": "US"}}),
            "max_amount",
        ),
        (
            json!({"time_window": {"days": "fri-mon", "start": "09:00", "end": "17:00", "tz": "UTC"}}),
            "time_window",
        ),
        (
            json!({"time_window": {"days": "", "start": "09:00", "end": "17:00", "tz": "UTC"}}),
            "time_window",
        ),
        (
            json!({"time_window": {"days": "mon,", "start": "09:00", "end": "17:00", "tz": "UTC"}}),
            "time_window",
        ),
        (
            json!({"time_window": {"days": "Mon", "start": "09:00", "end": "17:00", "tz": "UTC"}}),
            "time_window",
        ),
        (
            json!({"time_window": {"days": "mon", "start": "17:00", "end": "09:00", "tz": "UTC"}}),
            "time_window",
        ),
        (
            json!({"time_window": {"days": "mon", "start": "09:00", "end": "09:00", "tz": "UTC"}}),
            "time_window",
        ),
        (
            json!({"time_window": {"days": "mon", "start": "9:00", "end": "17:00", "tz": "UTC"}}),
            "time_window",
        ),
        (
            json!({"time_window": {"days": "mon", "start": "09:00", "end": "24:01", "tz": "UTC"}}),
            "time_window",
        ),
        (
            json!({"time_window": {"days": "mon", "start": "09:60", "end": "17:00", "tz": "UTC"}}),
            "time_window",
        ),
        (
            json!({"time_window": {"days": "mon", "start": "09:00", "end": "17:00", "tz": "Berlin"}}),
            "time_window",
        ),
        (
            json!({"time_window": {"days": "mon", "start": "09:00", "end": "17:00", "tz": "Europe/../x"}}),
            "time_window",
        ),
        (json!({"rate": {"max": 0, "per_seconds": 60}}), "rate"),
        (
            json!({"rate": {"max": 1_000_001, "per_seconds": 60}}),
            "rate",
        ),
        (json!({"rate": {"max": 1.5, "per_seconds": 60}}), "rate"),
        (json!({"rate": {"max": 10, "per_seconds": 86_401}}), "rate"),
        (json!({"rate": {"max": 10, "per_seconds": -1}}), "rate"),
        (json!({"min_trust": 101}), "min_trust"),
        (json!({"min_trust": -1}), "min_trust"),
        (json!({"min_trust": 5.5}), "min_trust"),
    ];
    for (value, name) in bad {
        let err = scope_err(json!([detail(json!({"constraints": value.clone()}))]));
        assert!(
            matches!(&err, ScopeError::InvalidConstraint { name: n, .. } if *n == name),
            "{value}: {err:?}"
        );
    }
    for value in [
        json!({"max_cost": 1}),
        json!({"rate": {"max": 1, "per_seconds": 1, "burst": 2}}),
        json!({"max_amount": {"value": "1", "currency": "USD"}}),
        json!({"time_window": {"days": "mon", "start": "09:00", "end": "17:00"}}),
    ] {
        let err = scope_err(json!([detail(json!({"constraints": value.clone()}))]));
        assert!(
            matches!(err, ScopeError::Malformed { .. }),
            "{value}: {err:?}"
        );
    }
}

#[test]
fn constraint_strictness() {
    let parent = constraints(json!({
        "max_amount": {"value": 100, "currency": "USD"},
        "time_window": {"days": "mon-fri", "start": "09:00", "end": "17:00", "tz": "Europe/Berlin"},
        "approval_required_for": ["delete"],
        "rate": {"max": 60, "per_seconds": 60},
        "min_trust": 50
    }));
    assert!(parent.at_least_as_strict_as(&parent));
    assert!(parent.at_least_as_strict_as(&Constraints::none()));
    assert!(!Constraints::none().at_least_as_strict_as(&parent));
    let stricter = constraints(json!({
        "max_amount": {"value": 99.5, "currency": "USD"},
        "time_window": {"days": "tue,thu", "start": "10:00", "end": "17:00", "tz": "Europe/Berlin"},
        "approval_required_for": ["delete", "write"],
        "rate": {"max": 10, "per_seconds": 120},
        "min_trust": 80
    }));
    assert!(stricter.at_least_as_strict_as(&parent));
    assert!(!parent.at_least_as_strict_as(&stricter));
    let looser = [
        json!({"max_amount": {"value": 101, "currency": "USD"}}),
        json!({"max_amount": {"value": 1, "currency": "EUR"}}),
        json!({"time_window": {"days": "mon-sat", "start": "10:00", "end": "17:00", "tz": "Europe/Berlin"}}),
        json!({"time_window": {"days": "mon", "start": "08:59", "end": "17:00", "tz": "Europe/Berlin"}}),
        json!({"time_window": {"days": "mon", "start": "10:00", "end": "17:01", "tz": "Europe/Berlin"}}),
        json!({"time_window": {"days": "mon", "start": "10:00", "end": "11:00", "tz": "UTC"}}),
        json!({"approval_required_for": ["write"]}),
        json!({"rate": {"max": 61, "per_seconds": 60}}),
        json!({"rate": {"max": 60, "per_seconds": 59}}),
        json!({"min_trust": 49}),
    ];
    for change in looser {
        let mut value = serde_json::to_value(&stricter).unwrap();
        for (k, v) in change.as_object().unwrap() {
            value[k] = v.clone();
        }
        let c = constraints(value.clone());
        assert!(!c.at_least_as_strict_as(&parent), "{value}");
    }
}

// ---------------------------------------------------------------- details and scopes

#[test]
fn detail_rejections() {
    use ScopeError as E;
    let cases: Vec<(Value, Check)> = vec![
        (json!({}), |e| matches!(e, E::Malformed { .. })),
        (json!([]), |e| {
            *e == E::Empty {
                field: "authorization_details",
            }
        }),
        (json!([1]), |e| matches!(e, E::Malformed { .. })),
        (
            json!([{"type": "payment_initiation", "actions": ["read"]}]),
            |e| {
                *e == E::UnsupportedType {
                    kind: "payment_initiation".into(),
                }
            },
        ),
        (json!([{"actions": ["read"], "resources": ["a"]}]), |e| {
            matches!(e, E::Malformed { .. })
        }),
        (json!([detail(json!({"datatypes": ["x"]}))]), |e| {
            matches!(e, E::Malformed { .. })
        }),
        (json!([detail(json!({"actions": []}))]), |e| {
            *e == E::Empty { field: "actions" }
        }),
        (json!([detail(json!({"resources": []}))]), |e| {
            *e == E::Empty { field: "resources" }
        }),
        (json!([detail(json!({"locations": []}))]), |e| {
            *e == E::Empty { field: "locations" }
        }),
        (json!([detail(json!({"actions": "read"}))]), |e| {
            matches!(e, E::Malformed { .. })
        }),
        (json!([detail(json!({"resources": ["a/../b"]}))]), |e| {
            matches!(e, E::DotSegment { .. })
        }),
        (json!([detail(json!({"resources": vec!["a"; 33]}))]), |e| {
            *e == E::TooMany {
                field: "resources",
                max: 32,
            }
        }),
        (json!(vec![detail(json!({})); 17]), |e| {
            *e == E::TooMany {
                field: "authorization_details",
                max: 16,
            }
        }),
    ];
    for (value, check) in cases {
        let err = scope_err(value.clone());
        assert!(check(&err), "{value}: {err:?}");
    }
    let err = scope_err(json!([{"type": "other"}]));
    assert_eq!(
        err.to_string(),
        "unsupported authorization detail type `other`"
    );
}

#[test]
fn limits_as_configuration() {
    let limits: ScopeLimits =
        serde_json::from_value(json!({"vocabulary": ["read", "approve"], "max_details": 4}))
            .unwrap();
    assert_eq!(limits.max_details, 4);
    assert_eq!(limits.max_items, MAX_ITEMS);
    assert!(limits.vocabulary.contains(&Action::new("approve").unwrap()));
    assert!(serde_json::from_value::<ScopeLimits>(json!({"max_detail": 4})).is_err());
    assert!(serde_json::from_value::<ScopeLimits>(json!({"vocabulary": []})).is_err());
    assert_eq!(
        serde_json::from_value::<ScopeLimits>(json!({})).unwrap(),
        ScopeLimits::default()
    );
}

#[test]
fn configured_limits_only_lower() {
    let tight = ScopeLimits {
        max_details: 1,
        max_items: 2,
        max_segments: 2,
        ..ScopeLimits::default()
    };
    let two = json!([detail(json!({})), detail(json!({}))]);
    assert!(matches!(
        Scope::parse(&two, &tight),
        Err(ScopeError::TooMany { max: 1, .. })
    ));
    let deep = json!([detail(json!({"resources": ["a/b/c"]}))]);
    assert!(matches!(
        Scope::parse(&deep, &tight),
        Err(ScopeError::TooManySegments { max: 2, .. })
    ));
    let loose = ScopeLimits {
        max_details: 1000,
        ..ScopeLimits::default()
    };
    assert!(matches!(
        Scope::parse(&json!(vec![detail(json!({})); 17]), &loose),
        Err(ScopeError::TooMany { max: 16, .. })
    ));
}

#[test]
fn scope_json_round_trip() {
    let input = json!([
        {"type": "mandate",
         "actions": ["write", "read", "read"],
         "locations": ["HTTPS://CRM.example.com/"],
         "resources": ["/tickets/*", "customers/42/**"],
         "constraints": {"max_amount": {"value": 100, "currency": "USD"},
                          "time_window": {"days": "mon-fri", "start": "09:00", "end": "17:00", "tz": "Europe/Berlin"},
                          "approval_required_for": ["delete"],
                          "rate": {"max": 60, "per_seconds": 60},
                          "min_trust": 50}},
        {"type": "mandate", "actions": ["execute"], "resources": ["**"], "constraints": {}}
    ]);
    let s = scope(input);
    let out = serde_json::to_value(&s).unwrap();
    assert_eq!(
        out,
        json!([
            {"type": "mandate",
             "actions": ["read", "write"],
             "locations": ["https://crm.example.com"],
             "resources": ["customers/42/**", "tickets/*"],
             "constraints": {"max_amount": {"value": 100, "currency": "USD"},
                              "time_window": {"days": "mon-fri", "start": "09:00", "end": "17:00", "tz": "Europe/Berlin"},
                              "approval_required_for": ["delete"],
                              "rate": {"max": 60, "per_seconds": 60},
                              "min_trust": 50}},
            {"type": "mandate", "actions": ["execute"], "resources": ["**"]}
        ])
    );
    assert_eq!(scope(out.clone()), s);
    let back: Scope = serde_json::from_value(out.clone()).unwrap();
    assert_eq!(back, s);
    assert_eq!(serde_json::to_value(&back).unwrap(), out);
    // serde still checks structure.
    assert!(serde_json::from_value::<Scope>(json!([])).is_err());
    assert!(
        serde_json::from_value::<Scope>(json!([detail(json!({"resources": ["a//b"]}))])).is_err()
    );
    assert!(serde_json::from_value::<Scope>(json!([detail(json!({"type": "x"}))])).is_err());
}

#[test]
fn prohibitions_parse_and_include() {
    let parsed = Prohibitions::parse(
        &json!([
            {"actions": ["delete"], "resources": ["**"]},
            {"actions": ["write", "delete"], "resources": ["a/*", "b"]},
            {"actions": ["delete"], "resources": ["/**"]}
        ]),
        &limits(),
    )
    .unwrap();
    assert_eq!(parsed.len(), 2);
    let narrow = Prohibitions::parse(
        &json!([{"actions": ["delete"], "resources": ["a/b"]}]),
        &limits(),
    )
    .unwrap();
    assert!(parsed.includes(&narrow));
    assert!(!narrow.includes(&parsed));
    assert!(parsed.includes(&parsed));
    assert!(parsed.includes(&Prohibitions::none()));
    assert!(!Prohibitions::none().includes(&parsed));
    let union = narrow.union(&parsed).unwrap();
    assert!(union.includes(&parsed) && union.includes(&narrow));
    let back: Prohibitions =
        serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
    assert_eq!(back, parsed);
    for (bad, check) in [
        (
            json!([{"actions": [], "resources": ["a"]}]),
            ScopeError::Empty { field: "actions" },
        ),
        (
            json!([{"actions": ["read"], "resources": []}]),
            ScopeError::Empty { field: "resources" },
        ),
    ] {
        assert_eq!(Prohibitions::parse(&bad, &limits()).unwrap_err(), check);
    }
    for bad in [
        json!({"actions": ["read"], "resources": ["a"]}),
        json!([{"actions": ["read"], "resources": ["a"], "locations": []}]),
    ] {
        assert!(matches!(
            Prohibitions::parse(&bad, &limits()),
            Err(ScopeError::Malformed { .. })
        ));
    }
    let many = json!(vec![json!({"actions": ["read"], "resources": ["a"]}); 33]);
    assert_eq!(
        Prohibitions::parse(&many, &limits()).unwrap_err(),
        ScopeError::TooMany {
            field: "prohibitions",
            max: 32
        }
    );
}

// ---------------------------------------------------------------- evaluation

#[test]
fn evaluation() {
    let s = scope(json!([
        {"type": "mandate", "actions": ["read"], "locations": ["https://a.example"], "resources": ["tickets/*"]},
        {"type": "mandate", "actions": ["read", "write"], "resources": ["customers/42/**"],
         "constraints": {"min_trust": 50}}
    ]));
    let none = Prohibitions::none();
    let allow = |detail| Decision::Allow { detail };
    let not_granted = Decision::Deny {
        reason: DenyReason::NotGranted,
    };
    assert_eq!(
        evaluate(
            &s,
            &none,
            &request("read", Some("https://A.example/"), "tickets/1")
        ),
        allow(0)
    );
    assert_eq!(
        evaluate(&s, &none, &request("read", None, "tickets/1")),
        not_granted
    );
    assert_eq!(
        evaluate(
            &s,
            &none,
            &request("read", Some("https://b.example"), "tickets/1")
        ),
        not_granted
    );
    assert_eq!(
        evaluate(
            &s,
            &none,
            &request("write", Some("https://a.example"), "tickets/1")
        ),
        not_granted
    );
    assert_eq!(
        evaluate(&s, &none, &request("write", None, "customers/42")),
        allow(1)
    );
    assert_eq!(
        evaluate(
            &s,
            &none,
            &request("write", Some("https://z.example"), "customers/42/x/y")
        ),
        allow(1)
    );
    assert_eq!(
        evaluate(&s, &none, &request("write", None, "customers/4")),
        not_granted
    );
    let req = request("read", Some("https://a.example"), "tickets/1");
    assert_eq!(s.granting(&req).collect::<Vec<_>>(), [0]);
    let Decision::Allow { detail } = evaluate(&s, &none, &request("read", None, "customers/42/x"))
    else {
        panic!("expected allow");
    };
    assert_eq!(
        s.detail(detail)
            .unwrap()
            .constraints()
            .min_trust()
            .unwrap()
            .get(),
        50
    );

    let prohibitions = Prohibitions::parse(
        &json!([
            {"actions": ["write"], "resources": ["**"]},
            {"actions": ["delete", "read"], "resources": ["customers/42/secret/**"]}
        ]),
        &limits(),
    )
    .unwrap();
    let decision = evaluate(
        &s,
        &prohibitions,
        &request("read", None, "customers/42/secret"),
    );
    let index = prohibitions
        .iter()
        .position(|p| p.actions().contains(&Action::new("read").unwrap()))
        .unwrap();
    assert_eq!(
        decision,
        Decision::Deny {
            reason: DenyReason::Prohibited { index }
        }
    );
    assert!(!evaluate(&s, &prohibitions, &request("write", None, "customers/42")).is_allow());
    assert!(
        evaluate(
            &s,
            &prohibitions,
            &request("read", None, "customers/42/public")
        )
        .is_allow()
    );
    assert_eq!(
        serde_json::to_value(decision).unwrap(),
        json!({"decision": "deny", "reason": {"kind": "prohibited", "index": index}})
    );
    assert_eq!(
        serde_json::to_value(allow(1)).unwrap(),
        json!({"decision": "allow", "detail": 1})
    );
}
