//! Bounded in-memory stores: the verified-token cache, the DPoP replay store and a bounded set
//! of revoked ids.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// A map of at most `capacity` entries that evicts the oldest insertion first.
#[derive(Debug)]
pub(crate) struct Fifo<K, V> {
    capacity: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Eq + Hash + Clone, V> Fifo<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            map: HashMap::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
        }
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key)
    }

    /// Inserts (or replaces) `key`, evicting the oldest entries past the capacity.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        while self.map.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        // The key stays in `order` until it reaches the front; `insert` tolerates that.
        self.map.remove(key)
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.map.retain(|k, v| keep(k, v));
        let map = &self.map;
        self.order.retain(|k| map.contains_key(k));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }
}

/// SHA-256 of a token: the key of the token cache (the token itself is never kept as a key).
pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The DPoP replay store (RFC 9449 §11.1): `(jkt, jti)` pairs seen within the acceptance
/// window, bounded in number.
///
/// "Servers SHOULD store, in the context of the target URI, the jti value of each DPoP proof
/// for the time window in which the respective DPoP proof JWT would be accepted." A proof
/// first seen at `t` is acceptable until at most `t + max_age + future_leeway` (its `iat` is
/// at most `t + future_leeway`), so each pair is kept that long. Expiries are inserted in
/// clock order, so the oldest is always at the front.
#[derive(Debug)]
pub(crate) struct ReplayStore {
    capacity: usize,
    seen: HashSet<[u8; 32]>,
    expiries: VecDeque<(i64, [u8; 32])>,
}

/// Why a proof was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayError {
    /// The pair was already seen: a replay.
    Replayed,
    /// The store is full of unexpired pairs: refuse rather than forget (fail closed).
    Full,
}

impl ReplayStore {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: HashSet::new(),
            expiries: VecDeque::new(),
        }
    }

    /// Records `(jkt, jti)` at `now_ms`, to be kept until `keep_until_ms`.
    pub(crate) fn record(
        &mut self,
        jkt: &str,
        jti: &str,
        now_ms: i64,
        keep_until_ms: i64,
    ) -> Result<(), ReplayError> {
        self.purge(now_ms);
        let mut h = Sha256::new();
        h.update(jkt.as_bytes());
        h.update([0u8]);
        h.update(jti.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        if self.seen.contains(&key) {
            return Err(ReplayError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(ReplayError::Full);
        }
        self.seen.insert(key);
        self.expiries.push_back((keep_until_ms, key));
        Ok(())
    }

    fn purge(&mut self, now_ms: i64) {
        while let Some(&(until, key)) = self.expiries.front() {
            if until > now_ms {
                break;
            }
            self.expiries.pop_front();
            self.seen.remove(&key);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

/// A set of ids with the time each was added, bounded by count and age.
#[derive(Debug)]
pub(crate) struct IdSet {
    inner: Fifo<Arc<str>, i64>,
}

impl IdSet {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Fifo::new(capacity),
        }
    }

    pub(crate) fn insert(&mut self, id: &str, now_ms: i64) {
        self.inner.insert(Arc::from(id), now_ms);
    }

    pub(crate) fn remove(&mut self, id: &str) {
        self.inner.map.remove(id);
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.inner.map.contains_key(id)
    }

    /// Forgets ids added before `before_ms`.
    pub(crate) fn purge_older_than(&mut self, before_ms: i64) {
        self.inner.retain(|_, at| *at >= before_ms);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_evicts_the_oldest() {
        let mut f = Fifo::new(2);
        f.insert(1, "a");
        f.insert(2, "b");
        f.insert(1, "a2");
        assert_eq!(f.len(), 2);
        f.insert(3, "c");
        assert_eq!(f.get(&1), None, "1 was inserted first");
        assert_eq!(f.get(&2), Some(&"b"));
        assert_eq!(f.get(&3), Some(&"c"));
        f.remove(&2);
        f.insert(4, "d");
        assert_eq!(f.len(), 2);
        assert_eq!(f.get(&3), Some(&"c"));
    }

    #[test]
    fn replay_store_refuses_replays_and_forgets_after_the_window() {
        let mut r = ReplayStore::new(2);
        assert_eq!(r.record("k", "1", 0, 100), Ok(()));
        assert_eq!(r.record("k", "1", 50, 150), Err(ReplayError::Replayed));
        assert_eq!(r.record("other", "1", 50, 150), Ok(()), "scoped by key");
        assert_eq!(r.record("k", "2", 60, 160), Err(ReplayError::Full));
        assert_eq!(r.record("k", "1", 100, 200), Ok(()), "expired entry purged");
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn id_set_is_bounded_by_count_and_age() {
        let mut s = IdSet::new(2);
        s.insert("a", 1);
        s.insert("b", 2);
        s.insert("c", 3);
        assert!(!s.contains("a") && s.contains("b") && s.contains("c"));
        s.purge_older_than(3);
        assert!(!s.contains("b") && s.contains("c"));
        s.remove("c");
        assert_eq!(s.len(), 0);
    }
}
