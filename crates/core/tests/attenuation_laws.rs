//! Property tests of the attenuation laws written in `mandate_core::scope::attenuation`.
//!
//! Scopes are drawn over a tiny alphabet (three actions, two locations, segments from
//! `a`, `b`, `c`, `*`, `**`) so that random pairs often relate, and every claim about the
//! requests a scope allows is checked against every request of a fixed sample.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;

use mandate_core::scope::{
    AccessRequest, Action, AttenuationRequest, Decision, DelegationTerms, DenyReason, Prohibitions,
    ResourcePath, ResourcePattern, Scope, ScopeError, ScopeLimits, evaluate,
};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{Value, json};

const ACTIONS: [&str; 3] = ["read", "write", "delete"];
const LOCATIONS: [&str; 2] = ["https://a.example", "https://b.example"];
const LITERALS: [&str; 3] = ["a", "b", "c"];
const NOW: i64 = 1_763_900_000_000;
const HOUR: i64 = 3_600_000;

// ------------------------------------------------------------------ the model

/// One authorization detail over the tiny alphabet, kept in a form the tests can reason about.
#[derive(Debug, Clone)]
struct DetailSpec {
    actions: Vec<usize>,
    locations: Option<Vec<usize>>,
    resources: Vec<String>,
    constraints: ConstraintSpec,
}

/// The constraints of a [`DetailSpec`].
#[derive(Debug, Clone, Default)]
struct ConstraintSpec {
    max_amount: Option<u32>,
    window: Option<Window>,
    approval: Option<Vec<usize>>,
    rate: Option<(u32, u32)>,
    min_trust: Option<u8>,
}

/// A time window: a day mask (bit 0 = Monday), whole hours, a zone from [`ZONES`].
#[derive(Debug, Clone, Copy)]
struct Window {
    days: u8,
    start_hour: u16,
    end_hour: u16,
    zone: usize,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const ZONES: [&str; 2] = ["UTC", "Europe/Berlin"];

impl ConstraintSpec {
    fn to_json(&self) -> Value {
        let mut constraints = serde_json::Map::new();
        if let Some(value) = self.max_amount {
            constraints.insert(
                "max_amount".into(),
                json!({"value": value, "currency": "USD"}),
            );
        }
        if let Some(w) = self.window {
            let days: Vec<&str> = (0..7)
                .filter(|d| w.days & (1 << d) != 0)
                .map(|d| DAYS[d])
                .collect();
            constraints.insert(
                "time_window".into(),
                json!({"days": days.join(","), "start": format!("{:02}:00", w.start_hour),
                       "end": format!("{:02}:00", w.end_hour), "tz": ZONES[w.zone]}),
            );
        }
        if let Some(approval) = &self.approval {
            let names: Vec<_> = approval.iter().map(|&i| ACTIONS[i]).collect();
            constraints.insert("approval_required_for".into(), json!(names));
        }
        if let Some((max, per)) = self.rate {
            constraints.insert("rate".into(), json!({"max": max, "per_seconds": per}));
        }
        if let Some(trust) = self.min_trust {
            constraints.insert("min_trust".into(), json!(trust));
        }
        Value::Object(constraints)
    }

    /// A model of what the gate will check, one kind at a time (the zone is ignored: only
    /// equal zones compare). An absent constraint is always satisfied.
    fn amount_ok(&self, amount: u32) -> bool {
        self.max_amount.is_none_or(|max| amount <= max)
    }

    fn window_ok(&self, day: usize, minute: u16) -> bool {
        self.window.is_none_or(|w| {
            w.days & (1 << day) != 0 && w.start_hour * 60 <= minute && minute < w.end_hour * 60
        })
    }

    fn approval_ok(&self, action: usize, approved: bool) -> bool {
        self.approval
            .as_ref()
            .is_none_or(|a| !a.contains(&action) || approved)
    }

    /// `history`: the seconds at which requests were made.
    fn rate_ok(&self, history: &[u32]) -> bool {
        self.rate.is_none_or(|(max, per)| {
            history.iter().all(|&t| {
                let in_window = history.iter().filter(|&&u| u >= t && u < t + per).count();
                in_window <= max as usize
            })
        })
    }

    fn trust_ok(&self, trust: u8) -> bool {
        self.min_trust.is_none_or(|min| trust >= min)
    }

    /// Whether every input `self` accepts, `parent` accepts too (rates on `histories`).
    fn implies(&self, parent: &ConstraintSpec, histories: &[Vec<u32>]) -> bool {
        (0..=110).all(|a| !self.amount_ok(a) || parent.amount_ok(a))
            && (0..7).all(|d| {
                (0..1440)
                    .step_by(30)
                    .all(|m| !self.window_ok(d, m) || parent.window_ok(d, m))
            })
            && (0..ACTIONS.len()).all(|a| {
                [false, true]
                    .into_iter()
                    .all(|ok| !self.approval_ok(a, ok) || parent.approval_ok(a, ok))
            })
            && histories
                .iter()
                .all(|h| !self.rate_ok(h) || parent.rate_ok(h))
            && (0..=100).all(|t| !self.trust_ok(t) || parent.trust_ok(t))
    }
}

#[derive(Debug, Clone)]
struct ProhibitionSpec {
    actions: Vec<usize>,
    resources: Vec<String>,
}

impl DetailSpec {
    fn to_json(&self) -> Value {
        let mut detail = json!({
            "type": "mandate",
            "actions": self.actions.iter().map(|&i| ACTIONS[i]).collect::<Vec<_>>(),
            "resources": self.resources,
            "constraints": self.constraints.to_json(),
        });
        if let Some(locations) = &self.locations {
            detail["locations"] =
                json!(locations.iter().map(|&i| LOCATIONS[i]).collect::<Vec<_>>());
        }
        detail
    }

    /// The model's grant: action listed, location allowed, some pattern matches.
    fn grants(&self, req: &Req) -> bool {
        self.actions.contains(&req.action)
            && match (&self.locations, req.location) {
                (None, _) => true,
                (Some(ls), Some(l)) => ls.contains(&l),
                (Some(_), None) => false,
            }
            && self.resources.iter().any(|p| model_matches(p, &req.path))
    }
}

impl ProhibitionSpec {
    fn to_json(&self) -> Value {
        json!({
            "actions": self.actions.iter().map(|&i| ACTIONS[i]).collect::<Vec<_>>(),
            "resources": self.resources,
        })
    }

    fn denies(&self, req: &Req) -> bool {
        self.actions.contains(&req.action)
            && self.resources.iter().any(|p| model_matches(p, &req.path))
    }
}

fn scope_json(details: &[DetailSpec]) -> Value {
    Value::Array(details.iter().map(DetailSpec::to_json).collect())
}

fn prohibitions_json(items: &[ProhibitionSpec]) -> Value {
    Value::Array(items.iter().map(ProhibitionSpec::to_json).collect())
}

fn parse_scope(details: &[DetailSpec]) -> Scope {
    Scope::parse(&scope_json(details), &ScopeLimits::default()).unwrap()
}

fn parse_prohibitions(items: &[ProhibitionSpec]) -> Prohibitions {
    Prohibitions::parse(&prohibitions_json(items), &ScopeLimits::default()).unwrap()
}

/// A model of pattern matching, written independently of the implementation.
fn model_matches(pattern: &str, path: &[String]) -> bool {
    fn go(tokens: &[&str], path: &[String]) -> bool {
        match tokens.split_first() {
            None => path.is_empty(),
            Some((&"**", _)) => true,
            Some((&"*", rest)) => !path.is_empty() && go(rest, &path[1..]),
            Some((literal, rest)) => {
                path.first().is_some_and(|s| s == literal) && go(rest, &path[1..])
            }
        }
    }
    let tokens: Vec<&str> = pattern.split('/').collect();
    go(&tokens, path)
}

/// A sampled request: action index, location index, path segments.
#[derive(Debug, Clone)]
struct Req {
    action: usize,
    location: Option<usize>,
    path: Vec<String>,
}

impl Req {
    fn to_request(&self) -> AccessRequest {
        AccessRequest {
            action: Action::new(ACTIONS[self.action]).unwrap(),
            location: self.location.map(|l| LOCATIONS[l].parse().unwrap()),
            resource: ResourcePath::parse(&self.path.join("/")).unwrap(),
        }
    }
}

/// Every path over `alphabet` with 1 to `max_len` segments.
fn paths(alphabet: &[&str], max_len: usize) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    let mut frontier = vec![Vec::<String>::new()];
    for _ in 0..max_len {
        let mut next = Vec::new();
        for prefix in &frontier {
            for s in alphabet {
                let mut p = prefix.clone();
                p.push((*s).to_owned());
                next.push(p);
            }
        }
        all.extend(next.iter().cloned());
        frontier = next;
    }
    all
}

/// The request sample: every action × (no location, each location) × every path over
/// `a`, `b`, `c`, `z` of up to 3 segments plus some of 4. `z` matches no literal of any
/// generated pattern, so it stands for "some other segment".
fn sample_requests() -> Vec<(Req, AccessRequest)> {
    let mut all_paths = paths(&["a", "b", "c", "z"], 3);
    all_paths.extend(paths(&["a", "z"], 4).into_iter().filter(|p| p.len() == 4));
    let mut out = Vec::new();
    for action in 0..ACTIONS.len() {
        for location in [None, Some(0), Some(1)] {
            for path in &all_paths {
                let req = Req {
                    action,
                    location,
                    path: path.clone(),
                };
                let request = req.to_request();
                out.push((req, request));
            }
        }
    }
    out
}

fn allows(scope: &Scope, prohibitions: &Prohibitions, request: &AccessRequest) -> bool {
    evaluate(scope, prohibitions, request).is_allow()
}

// ------------------------------------------------------------------ strategies

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![3 => select(&LITERALS[..]).prop_map(str::to_owned), 1 => Just("*".to_owned())]
}

/// A pattern of up to `max_fixed` fixed segments and an optional final `**`.
fn pattern_str(max_fixed: usize) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(segment(), 0..=max_fixed),
        any::<bool>(),
    )
        .prop_map(|(mut segments, rest)| {
            if rest || segments.is_empty() {
                segments.push("**".to_owned());
            }
            segments.join("/")
        })
}

fn index_set(n: usize) -> impl Strategy<Value = Vec<usize>> {
    subsequence((0..n).collect::<Vec<_>>(), 1..=n)
}

fn window() -> impl Strategy<Value = Window> {
    (1u8..=127, 0u16..24, 0..ZONES.len())
        .prop_flat_map(|(days, start_hour, zone)| {
            (
                Just(days),
                Just(start_hour),
                start_hour + 1..=24,
                Just(zone),
            )
        })
        .prop_map(|(days, start_hour, end_hour, zone)| Window {
            days,
            start_hour,
            end_hour,
            zone,
        })
}

fn constraint_spec() -> impl Strategy<Value = ConstraintSpec> {
    (
        prop::option::weighted(0.3, 0u32..=100),
        prop::option::weighted(0.2, window()),
        prop::option::weighted(0.2, index_set(ACTIONS.len())),
        prop::option::weighted(0.3, (1u32..=6, 1u32..=3600)),
        prop::option::weighted(0.3, 0u8..=100),
    )
        .prop_map(
            |(max_amount, window, approval, rate, min_trust)| ConstraintSpec {
                max_amount,
                window,
                approval,
                rate,
                min_trust,
            },
        )
}

fn detail_spec() -> impl Strategy<Value = DetailSpec> {
    (
        index_set(ACTIONS.len()),
        prop::option::of(index_set(LOCATIONS.len())),
        prop::collection::vec(pattern_str(3), 1..=3),
        constraint_spec(),
    )
        .prop_map(|(actions, locations, resources, constraints)| DetailSpec {
            actions,
            locations,
            resources,
            constraints,
        })
}

fn scope_spec() -> impl Strategy<Value = Vec<DetailSpec>> {
    prop::collection::vec(detail_spec(), 1..=3)
}

fn prohibitions_spec(max: usize) -> impl Strategy<Value = Vec<ProhibitionSpec>> {
    prop::collection::vec(
        (
            index_set(ACTIONS.len()),
            prop::collection::vec(pattern_str(2), 1..=2),
        )
            .prop_map(|(actions, resources)| ProhibitionSpec { actions, resources }),
        0..=max,
    )
}

/// A pattern every path of which `parent` matches: `*` may become a literal, a final `**`
/// may become more segments (with or without a new `**`).
fn refine_pattern(parent: String) -> BoxedStrategy<String> {
    let tokens: Vec<String> = parent.split('/').map(str::to_owned).collect();
    let per_token: Vec<BoxedStrategy<Vec<String>>> = tokens
        .into_iter()
        .map(|t| match t.as_str() {
            "*" => prop_oneof![Just(vec!["*".to_owned()]), segment().prop_map(|s| vec![s])].boxed(),
            "**" => (prop::collection::vec(segment(), 0..=2), any::<bool>())
                .prop_map(|(mut more, rest)| {
                    if rest {
                        more.push("**".to_owned());
                    }
                    more
                })
                .boxed(),
            _ => Just(vec![t]).boxed(),
        })
        .collect();
    per_token
        .prop_map(|parts| {
            let segments: Vec<String> = parts.into_iter().flatten().collect();
            if segments.is_empty() {
                // `**` refined to nothing: pick one segment instead (still contained).
                "a".to_owned()
            } else {
                segments.join("/")
            }
        })
        .boxed()
}

/// A detail covered by `parent`.
fn narrower_detail(parent: DetailSpec) -> BoxedStrategy<DetailSpec> {
    let actions = subsequence(parent.actions.clone(), 1..=parent.actions.len());
    let locations = match parent.locations.clone() {
        None => prop::option::of(index_set(LOCATIONS.len())).boxed(),
        Some(ls) => {
            let n = ls.len();
            subsequence(ls, 1..=n).prop_map(Some).boxed()
        }
    };
    let resources = prop::collection::vec(
        select(parent.resources.clone()).prop_flat_map(refine_pattern),
        1..=2,
    );
    (
        actions,
        locations,
        resources,
        narrower_constraints(parent.constraints),
    )
        .prop_map(|(actions, locations, resources, constraints)| DetailSpec {
            actions,
            locations,
            resources,
            constraints,
        })
        .boxed()
}

/// Constraints at least as strict as `parent`'s: each present one tightened, others maybe added.
fn narrower_constraints(parent: ConstraintSpec) -> BoxedStrategy<ConstraintSpec> {
    let max_amount = match parent.max_amount {
        Some(v) => (0..=v).prop_map(Some).boxed(),
        None => prop::option::weighted(0.2, 0u32..=100).boxed(),
    };
    let window = match parent.window {
        Some(w) => (0u8..=127, w.start_hour..w.end_hour)
            .prop_flat_map(move |(mask, start_hour)| {
                (Just(mask), Just(start_hour), start_hour + 1..=w.end_hour)
            })
            .prop_map(move |(mask, start_hour, end_hour)| {
                let days = if w.days & mask == 0 {
                    w.days
                } else {
                    w.days & mask
                };
                Some(Window {
                    days,
                    start_hour,
                    end_hour,
                    zone: w.zone,
                })
            })
            .boxed(),
        None => prop::option::weighted(0.2, window()).boxed(),
    };
    let approval = match parent.approval.clone() {
        Some(a) => prop::collection::vec(0..ACTIONS.len(), 0..=2)
            .prop_map(move |extra| {
                let all: BTreeSet<usize> = a.iter().copied().chain(extra).collect();
                Some(all.into_iter().collect())
            })
            .boxed(),
        None => prop::option::weighted(0.2, index_set(ACTIONS.len())).boxed(),
    };
    let rate = match parent.rate {
        Some((m, s)) => (1..=m, s..=s + 600).prop_map(Some).boxed(),
        None => prop::option::weighted(0.2, (1u32..=6, 1u32..=3600)).boxed(),
    };
    let min_trust = match parent.min_trust {
        Some(t) => (t..=100).prop_map(Some).boxed(),
        None => prop::option::weighted(0.2, 0u8..=100).boxed(),
    };
    (max_amount, window, approval, rate, min_trust)
        .prop_map(
            |(max_amount, window, approval, rate, min_trust)| ConstraintSpec {
                max_amount,
                window,
                approval,
                rate,
                min_trust,
            },
        )
        .boxed()
}

/// Stricter constraints with, most of the time, one of them replaced or stretched: near the
/// boundary of "at least as strict".
fn nearby_constraints(parent: ConstraintSpec) -> BoxedStrategy<ConstraintSpec> {
    (
        narrower_constraints(parent),
        0..6usize,
        constraint_spec(),
        any::<bool>(),
        0u8..=127,
    )
        .prop_map(|(mut c, change, other, earlier, mask)| {
            match change {
                0 => c.max_amount = other.max_amount.map(|v| v + 1),
                1 => {
                    if let Some(w) = &mut c.window {
                        if earlier && w.start_hour > 0 {
                            w.start_hour -= 1;
                        } else if w.end_hour < 24 {
                            w.end_hour += 1;
                        } else {
                            w.days |= mask;
                        }
                    }
                }
                2 => c.approval = other.approval,
                3 => c.rate = other.rate,
                4 => c.min_trust = other.min_trust,
                _ => {}
            }
            c
        })
        .boxed()
}

/// A scope within `parent`: each detail narrows one parent detail.
fn narrower_scope(parent: Vec<DetailSpec>) -> BoxedStrategy<Vec<DetailSpec>> {
    prop::collection::vec(select(parent).prop_flat_map(narrower_detail), 1..=3).boxed()
}

/// A narrower detail with, half of the time, one part widened: an extra action, any
/// location, a random pattern, or no constraints. Such details sit near the boundary of ⊑.
fn nearby_detail(parent: DetailSpec) -> BoxedStrategy<DetailSpec> {
    (
        narrower_detail(parent),
        0..8usize,
        0..ACTIONS.len(),
        pattern_str(3),
    )
        .prop_map(|(mut d, change, action, pattern)| {
            match change {
                0 if !d.actions.contains(&action) => d.actions.push(action),
                1 => d.locations = None,
                2 => d.resources.push(pattern),
                3 => d.constraints = ConstraintSpec::default(),
                _ => {}
            }
            d
        })
        .boxed()
}

/// A scope each of whose details is near one parent detail.
fn nearby_scope(parent: Vec<DetailSpec>) -> BoxedStrategy<Vec<DetailSpec>> {
    prop::collection::vec(select(parent).prop_flat_map(nearby_detail), 1..=3).boxed()
}

/// Usually a narrower scope, sometimes a nearby or an unrelated one (which attenuation must
/// refuse unless it happens to be within).
fn next_scope(parent: Vec<DetailSpec>) -> BoxedStrategy<Vec<DetailSpec>> {
    prop_oneof![
        3 => narrower_scope(parent.clone()),
        2 => nearby_scope(parent),
        1 => scope_spec(),
    ]
    .boxed()
}

/// One attenuation step: requested scope, extra prohibitions, expiry offset from the parent's.
#[derive(Debug, Clone)]
struct Step {
    scope: Vec<DetailSpec>,
    extra: Vec<ProhibitionSpec>,
    expiry_delta: Option<i64>,
    now_delta: i64,
}

/// A root scope and up to four steps, each drawn from the previous step's scope.
fn chain() -> impl Strategy<Value = (Vec<DetailSpec>, Vec<ProhibitionSpec>, u8, Vec<Step>)> {
    let steps = |root: Vec<DetailSpec>| {
        let mut strategy: BoxedStrategy<(Vec<DetailSpec>, Vec<Step>)> =
            Just((root, Vec::new())).boxed();
        for _ in 0..4 {
            strategy = strategy
                .prop_flat_map(|(last, steps)| {
                    (
                        next_scope(last),
                        prohibitions_spec(1),
                        prop::option::of(-HOUR / 2..=HOUR / 10),
                        0..HOUR / 4,
                    )
                        .prop_map(
                            move |(scope, extra, expiry_delta, now_delta)| {
                                let mut steps = steps.clone();
                                steps.push(Step {
                                    scope: scope.clone(),
                                    extra,
                                    expiry_delta,
                                    now_delta,
                                });
                                (scope, steps)
                            },
                        )
                })
                .boxed();
        }
        strategy.prop_map(|(_, steps)| steps)
    };
    (scope_spec(), prohibitions_spec(2), 1u8..=5).prop_flat_map(
        move |(root, prohibitions, max_depth)| {
            (
                Just(root.clone()),
                Just(prohibitions),
                Just(max_depth),
                steps(root),
            )
        },
    )
}

// ------------------------------------------------------------------ the laws

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// (a) Narrowing yields a subset: a derived narrower scope is accepted, and whenever
    /// `narrow` accepts any scope, the child allows nothing the parent denies.
    #[test]
    fn narrowing_yields_a_subset(
        (parent, derived, nearby) in scope_spec()
            .prop_flat_map(|p| (Just(p.clone()), narrower_scope(p.clone()), nearby_scope(p))),
        unrelated in scope_spec(),
    ) {
        let sample = sample_requests();
        let parent = parse_scope(&parent);
        let derived = parse_scope(&derived);
        prop_assert!(derived.is_within(&parent));
        prop_assert_eq!(parent.narrow(derived.clone()), Ok(derived.clone()));
        let none = Prohibitions::none();
        for child in [derived, parse_scope(&nearby), parse_scope(&unrelated)] {
            match parent.narrow(child.clone()) {
                Ok(narrowed) => {
                    prop_assert_eq!(&narrowed, &child);
                    for (_, request) in &sample {
                        if allows(&narrowed, &none, request) {
                            prop_assert!(allows(&parent, &none, request), "{:?}", request);
                        }
                    }
                }
                Err(ScopeError::Widening { detail, .. }) => {
                    prop_assert!(!child.is_within(&parent));
                    prop_assert!(detail < child.details().len());
                    let single = Scope::new(vec![child.details()[detail].clone()]).unwrap();
                    prop_assert!(!single.is_within(&parent));
                }
                Err(other) => prop_assert!(false, "unexpected error {:?}", other),
            }
        }
    }

    /// Constraint strictness is sound against a model of what the gate checks: whatever
    /// runtime inputs satisfy the stricter constraints also satisfy the looser ones; derived
    /// stricter constraints are recognised; the order is reflexive.
    #[test]
    fn constraint_strictness_is_sound(
        (parent, derived, nearby) in constraint_spec().prop_flat_map(|p| {
            (Just(p.clone()), narrower_constraints(p.clone()), nearby_constraints(p))
        }),
        unrelated in constraint_spec(),
        histories in prop::collection::vec(prop::collection::vec(0u32..4000, 1..=10), 16),
    ) {
        let parse = |c: &ConstraintSpec| {
            let detail = DetailSpec {
                actions: vec![0],
                locations: None,
                resources: vec!["**".into()],
                constraints: c.clone(),
            };
            parse_scope(&[detail]).details()[0].constraints().clone()
        };
        let p = parse(&parent);
        prop_assert!(p.at_least_as_strict_as(&p));
        prop_assert!(parse(&derived).at_least_as_strict_as(&p));
        for child in [derived, nearby, unrelated] {
            if parse(&child).at_least_as_strict_as(&p) {
                prop_assert!(child.implies(&parent, &histories), "{:?} ≼ {:?}", child, parent);
            }
        }
    }

    /// (b) ⊑ is reflexive, for scopes and for prohibitions.
    #[test]
    fn within_is_reflexive(scope in scope_spec(), prohibitions in prohibitions_spec(3)) {
        let scope = parse_scope(&scope);
        prop_assert!(scope.is_within(&scope));
        prop_assert_eq!(scope.narrow(scope.clone()), Ok(scope.clone()));
        let prohibitions = parse_prohibitions(&prohibitions);
        prop_assert!(prohibitions.includes(&prohibitions));
    }

    /// (c) ⊑ is transitive: on derived chains (where it must hold) and on random triples.
    #[test]
    fn within_is_transitive(
        (a, b, c) in scope_spec()
            .prop_flat_map(|a| (Just(a.clone()), next_scope(a)))
            .prop_flat_map(|(a, b)| (Just(a), Just(b.clone()), next_scope(b))),
        x in scope_spec(),
    ) {
        let (a, b, c, x) = (parse_scope(&a), parse_scope(&b), parse_scope(&c), parse_scope(&x));
        for (lo, mid, hi) in [(&c, &b, &a), (&x, &b, &a), (&c, &x, &a), (&c, &b, &x)] {
            if lo.is_within(mid) && mid.is_within(hi) {
                prop_assert!(lo.is_within(hi));
            }
        }
    }

    /// (d) A chain of up to four attenuations never allows a request the root denies;
    /// (e) inherited prohibitions keep winning down the chain;
    /// (f) expiry never increases, depth grows by one per hop and stays ≤ max_depth ≤ 10.
    #[test]
    fn chains_only_narrow((root, root_prohibitions, max_depth, steps) in chain(), strict in any::<bool>()) {
        let sample = sample_requests();
        let limits = ScopeLimits::default();
        let root_terms = DelegationTerms::mandate(
            parse_scope(&root),
            parse_prohibitions(&root_prohibitions),
            NOW + HOUR,
            max_depth,
            &limits,
        )
        .unwrap();
        let mut now = NOW;
        let mut current = root_terms.clone();
        for step in steps {
            now += step.now_delta;
            let request = AttenuationRequest {
                scope: parse_scope(&step.scope),
                extra_prohibitions: parse_prohibitions(&step.extra),
                expires_at: step.expiry_delta.map(|d| current.expires_at() + d),
            };
            let child = match current.attenuate(request.clone(), now, strict) {
                Ok(child) => child,
                Err(err) => {
                    // Each refusal is justified.
                    match err {
                        ScopeError::ParentExpired { .. } => prop_assert!(now >= current.expires_at()),
                        ScopeError::DepthExceeded { .. } => prop_assert!(current.depth() >= current.max_depth()),
                        ScopeError::Widening { .. } => prop_assert!(!request.scope.is_within(current.scope())),
                        ScopeError::NotStrict => prop_assert!(strict && current.scope().is_within(&request.scope)),
                        ScopeError::ExpiryExtended { requested, parent } => prop_assert!(requested > parent),
                        ScopeError::AlreadyExpired { expires_at, now: at } => prop_assert!(expires_at <= at),
                        other => prop_assert!(false, "unexpected error {:?}", other),
                    }
                    break;
                }
            };
            // (f)
            prop_assert!(child.is_within(&current));
            prop_assert!(child.expires_at() <= current.expires_at());
            prop_assert!(child.expires_at() > now);
            prop_assert_eq!(child.depth(), current.depth() + 1);
            prop_assert!(child.depth() <= child.max_depth());
            prop_assert_eq!(child.max_depth(), root_terms.max_depth());
            prop_assert!(child.max_depth() <= 10);
            prop_assert_eq!(child.scope(), &request.scope);
            prop_assert!(child.prohibitions().includes(current.prohibitions()));
            prop_assert!(child.prohibitions().includes(root_terms.prohibitions()));
            prop_assert!(child.prohibitions().includes(&request.extra_prohibitions));
            prop_assert!(child.scope().is_within(root_terms.scope()));
            if strict {
                prop_assert!(!current.scope().is_within(child.scope()));
            }
            // (d) and (e)
            for (req, request) in &sample {
                let decision = evaluate(child.scope(), child.prohibitions(), request);
                if decision.is_allow() {
                    prop_assert!(allows(root_terms.scope(), root_terms.prohibitions(), request));
                    prop_assert!(allows(current.scope(), current.prohibitions(), request));
                }
                if root_prohibitions.iter().any(|p| p.denies(req)) {
                    prop_assert!(
                        matches!(decision, Decision::Deny { reason: DenyReason::Prohibited { .. } }),
                        "{:?} {:?}", req, decision
                    );
                }
            }
            current = child;
        }
    }

    /// (e) Prohibitions always win, and evaluation agrees with the model.
    #[test]
    fn prohibitions_win(scope in scope_spec(), prohibitions in prohibitions_spec(3)) {
        let parsed_scope = parse_scope(&scope);
        let parsed = parse_prohibitions(&prohibitions);
        for (req, request) in sample_requests() {
            let decision = evaluate(&parsed_scope, &parsed, &request);
            let prohibited = prohibitions.iter().any(|p| p.denies(&req));
            match decision {
                Decision::Deny { reason: DenyReason::Prohibited { index } } => {
                    prop_assert!(prohibited);
                    prop_assert!(parsed.get(index).unwrap().matches(&request.action, &request.resource));
                }
                Decision::Allow { detail } => {
                    prop_assert!(!prohibited);
                    prop_assert!(scope[detail].grants(&req));
                    prop_assert!(scope[..detail].iter().all(|d| !d.grants(&req)));
                }
                Decision::Deny { reason: DenyReason::NotGranted } => {
                    prop_assert!(!prohibited);
                    prop_assert!(scope.iter().all(|d| !d.grants(&req)));
                }
            }
        }
    }

    /// (g) Pattern containment is exact: `p ⊇ c` iff every sampled path `c` matches, `p`
    /// matches (the sample is rich enough to hold a counterexample whenever there is one),
    /// and for wildcard-free `c` it coincides with matching. Matching agrees with the model.
    #[test]
    fn containment_is_exact(p in pattern_str(3), c in pattern_str(3)) {
        let all = paths(&["a", "b", "c", "z"], 4);
        let pp = ResourcePattern::parse(&p).unwrap();
        let cp = ResourcePattern::parse(&c).unwrap();
        let mut semantic = true;
        for path in &all {
            let rp = ResourcePath::parse(&path.join("/")).unwrap();
            prop_assert_eq!(pp.matches(&rp), model_matches(&p, path));
            prop_assert_eq!(cp.matches(&rp), model_matches(&c, path));
            if cp.matches(&rp) && !pp.matches(&rp) {
                semantic = false;
            }
        }
        // Paths have at least one segment, so `**` and `*/**` match the same paths; the
        // containment rule (as specified) does not see that and refuses `*/**` ⊇ `**`.
        // Being conservative there is sound; everywhere else it is exact.
        let empty_path_edge = c == "**" && p == "*/**";
        if pp.contains(&cp) {
            prop_assert!(semantic, "{} ⊇ {} claimed but false", p, c);
        } else {
            prop_assert!(!semantic || empty_path_edge, "{} ⊇ {} holds but was refused", p, c);
        }
        if !cp.has_wildcards() {
            let path = ResourcePath::parse(&c).unwrap();
            prop_assert_eq!(pp.contains(&cp), pp.matches(&path));
        }
        prop_assert!(pp.contains(&pp));
        prop_assert!(ResourcePattern::everything().contains(&pp));
    }

    /// (h) Normalisation happens exactly once, refuses every trick, and is idempotent.
    #[test]
    fn normalisation(tokens in prop::collection::vec(select(&TOKENS[..]), 1..=4), lead in any::<bool>()) {
        // A first empty token without the leading `/` would itself be the leading `/`.
        prop_assume!(lead || tokens.len() == 1 || !tokens[0].is_empty());
        let raw = format!("{}{}", if lead { "/" } else { "" }, tokens.join("/"));
        let bad_anywhere = tokens.iter().any(|t| BAD.contains(t));
        let wildcard = tokens.iter().any(|t| *t == "*" || *t == "**");
        let misplaced = tokens.iter().rev().skip(1).any(|t| *t == "**");

        match ResourcePattern::parse(&raw) {
            Ok(p) => {
                prop_assert!(!bad_anywhere && !misplaced, "{:?} accepted", raw);
                let printed = p.to_string();
                let again = ResourcePattern::parse(&printed).unwrap();
                prop_assert_eq!(&again, &p);
                prop_assert_eq!(again.to_string(), printed);
                let json = serde_json::to_value(&p).unwrap();
                prop_assert_eq!(serde_json::from_value::<ResourcePattern>(json).unwrap(), p);
            }
            Err(_) => prop_assert!(bad_anywhere || misplaced, "{:?} refused", raw),
        }

        match ResourcePath::parse(&raw) {
            Ok(path) => {
                prop_assert!(!bad_anywhere && !wildcard, "{:?} accepted", raw);
                let expected: Vec<&str> = tokens.iter().map(|t| decoded(t)).collect();
                prop_assert_eq!(path.segments().collect::<Vec<_>>(), expected);
                for s in path.segments() {
                    prop_assert!(!s.contains(['%', '/', '\\']) && s != "." && s != "..");
                }
                let again = ResourcePath::parse(&path.to_string()).unwrap();
                prop_assert_eq!(again, path);
            }
            Err(_) => prop_assert!(bad_anywhere || wildcard, "{:?} refused", raw),
        }
    }
}

/// Raw segments for the normalisation law: good ones, tricks, and wildcards.
const TOKENS: [&str; 22] = [
    "a",
    "b",
    "é",
    "e\u{301}",
    "%41",
    "caf%C3%A9",
    "x.y",
    "%20",
    "*",
    "**", // fine or wildcard
    ".",
    "..",
    "",
    "%2F",
    "%2f",
    "%5C",
    "%252F",
    "%2541",
    "%",
    "%zz",
    "a*",
    "%2E%2E",
];
const BAD: [&str; 12] = [
    ".", "..", "", "%2F", "%2f", "%5C", "%252F", "%2541", "%", "%zz", "a*", "%2E%2E",
];

/// What a good token must decode to: percent-decoded once, then NFC.
fn decoded(token: &str) -> &str {
    match token {
        "e\u{301}" | "é" => "é",
        "%41" => "A",
        "caf%C3%A9" => "café",
        "%20" => " ",
        other => other,
    }
}
