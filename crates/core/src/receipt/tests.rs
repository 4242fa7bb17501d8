//! Tests of receipt canonicalisation and chain verification.

use proptest::prelude::*;

use super::*;

fn event(i: u64) -> Event {
    Event {
        kind: EventKind::AgentRegistered,
        actor: Actor {
            agent: None,
            chain: vec![],
            human: Some(format!("usr_{i}")),
        },
        on_behalf_of: None,
        delegation: None,
        token: None,
        action: Some("create".into()),
        resource: Some(format!("agents/agt_{i}")),
        decision: Outcome::Allow,
        reasons: vec![],
        request_hash: None,
    }
}

fn chain(n: u64) -> Vec<(u64, String, serde_json::Value)> {
    let mut prev = ReceiptHash::GENESIS;
    (1..=n)
        .map(|seq| {
            let r = Receipt::seal(event(seq), "ten_a", seq, 1_000 + seq as i64, &prev);
            let (bytes, hash) = r.canonical_and_hash();
            prev = hash;
            (seq, hash.to_hex(), serde_json::from_slice(&bytes).unwrap())
        })
        .collect()
}

fn verify(items: &[(u64, String, serde_json::Value)]) -> Result<ChainSummary, ChainError> {
    let mut v = ChainVerifier::new();
    for (seq, hash, body) in items {
        v.push(*seq, hash, body)?;
    }
    Ok(v.finish())
}

#[test]
fn a_sound_chain_verifies() {
    let items = chain(5);
    let summary = verify(&items).unwrap();
    assert_eq!(summary.count, 5);
    assert_eq!(summary.head, items[4].1);
    assert_eq!(verify(&[]).unwrap().head, GENESIS_PREV);
}

#[test]
fn each_tamper_names_the_first_bad_record() {
    let mut edited = chain(5);
    edited[2].2["resource"] = "agents/agt_x".into();
    assert_eq!(verify(&edited), Err(ChainError::HashMismatch { seq: 3 }));

    let mut deleted = chain(5);
    deleted.remove(1);
    assert_eq!(verify(&deleted).unwrap_err().seq(), 3);

    let mut swapped = chain(5);
    swapped.swap(1, 2);
    assert_eq!(verify(&swapped).unwrap_err().seq(), 3);

    // Re-hashing an edited record does not help: the next link breaks.
    let mut rehashed = chain(5);
    rehashed[2].2["resource"] = "agents/agt_x".into();
    rehashed[2].1 = crate::encoding::hex(&crate::jcs::sha256(&rehashed[2].2).unwrap());
    assert_eq!(verify(&rehashed), Err(ChainError::BrokenLink { seq: 4 }));

    let mut renumbered = chain(3);
    renumbered[1].2["seq"] = 7.into();
    assert_eq!(
        verify(&renumbered),
        Err(ChainError::SeqMismatch { seq: 2, claimed: 7 })
    );

    let mut extra = chain(2);
    extra[1].2["extra"] = 1.into();
    assert!(matches!(
        verify(&extra),
        Err(ChainError::Malformed { seq: 2, .. })
    ));
}

fn any_text() -> impl Strategy<Value = String> {
    // Control characters, quotes, backslashes, non-BMP and line separators: the escaping edge
    // cases of RFC 8785 §3.2.2.2.
    prop::collection::vec(
        prop_oneof![
            any::<char>(),
            Just('"'),
            Just('\\'),
            Just('\u{7f}'),
            Just('\u{2028}'),
            Just('/'),
            (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap_or('a')),
        ],
        0..12,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

proptest! {
    /// The fixed-order serialisation of a receipt is byte-identical to RFC 8785 of its value.
    #[test]
    fn fixed_order_serialisation_is_jcs(
        texts in prop::collection::vec(any_text(), 8),
        opt in prop::collection::vec(any::<bool>(), 8),
        seq in 1u64..(1 << 53),
        at in 0i64..(1 << 53),
        reasons in prop::collection::vec(any_text(), 0..3),
    ) {
        let pick = |i: usize| if opt[i] { Some(texts[i].clone()) } else { None };
        let r = Receipt {
            action: pick(0),
            actor: Actor { agent: pick(1), chain: reasons.clone(), human: pick(2) },
            at,
            decision: if opt[3] { Outcome::Allow } else { Outcome::Deny },
            delegation: pick(3),
            kind: EventKind::Record,
            on_behalf_of: pick(4),
            prev: texts[5].clone(),
            reasons,
            request_hash: pick(6),
            resource: pick(7),
            seq,
            tenant: texts[0].clone(),
            token: pick(5),
        };
        let (bytes, hash) = r.canonical_and_hash();
        let generic = crate::jcs::canonicalize(&serde_json::to_value(&r).unwrap()).unwrap();
        prop_assert_eq!(std::str::from_utf8(&bytes).unwrap(), generic.as_str());
        prop_assert_eq!(hash.0, crate::jcs::sha256(&serde_json::to_value(&r).unwrap()).unwrap());
    }
}
