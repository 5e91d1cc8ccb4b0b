//! `Idempotency-Key` for webhook ingest: a request whose key was accepted before (for the
//! same table, within a day, among the newest `--idempotency-keys`) is answered as it was
//! the first time and writes nothing. The
//! key is bound to the body: the same key with another body is refused. While the first
//! request is still being written, a second one with its key is told to retry.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long an accepted key is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// What became of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// New: write, then [`IdempotencyKeys::accepted`] or [`IdempotencyKeys::failed`].
    Fresh,
    /// Accepted before with this body: answer this again, write nothing.
    Replay(String),
    /// Accepted before, or in flight, with another body.
    Conflict,
    /// The first request with this key is still being written.
    InFlight,
}

#[derive(Debug)]
struct Seen {
    body: [u8; 32],
    /// The answer given, once accepted.
    answer: Option<String>,
    at: Instant,
}

/// The keys seen by one server, per table.
#[derive(Debug)]
pub struct IdempotencyKeys {
    capacity: usize,
    seen: Mutex<Remembered>,
}

/// Keys by (table, key), and the order they were claimed in.
#[derive(Debug, Default)]
struct Remembered {
    keys: HashMap<(String, String), Seen>,
    order: VecDeque<((String, String), Instant)>,
}

impl IdempotencyKeys {
    /// At most `capacity` keys are remembered; the oldest go first.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: Mutex::default(),
        }
    }

    /// Claims `key` for a request to `table` with `body`.
    pub fn claim(&self, table: &str, key: &str, body: &[u8]) -> Claim {
        let digest: [u8; 32] = Sha256::digest(body).into();
        let mut seen = crate::stream::lock(&self.seen);
        let id = (table.to_string(), key.to_string());
        if let Some(entry) = seen.keys.get(&id)
            && entry.at.elapsed() < IDEMPOTENCY_TTL
        {
            return match (&entry.answer, entry.body == digest) {
                (_, false) => Claim::Conflict,
                (Some(answer), true) => Claim::Replay(answer.clone()),
                (None, true) => Claim::InFlight,
            };
        }
        // Forget the oldest claims: expired ones, and any beyond the capacity.
        while let Some((oldest, at)) = seen.order.front().cloned() {
            if seen.order.len() < self.capacity && at.elapsed() < IDEMPOTENCY_TTL {
                break;
            }
            seen.order.pop_front();
            if seen.keys.get(&oldest).is_some_and(|e| e.at == at) {
                seen.keys.remove(&oldest);
            }
        }
        let at = Instant::now();
        seen.order.push_back((id.clone(), at));
        seen.keys.insert(
            id,
            Seen {
                body: digest,
                answer: None,
                at,
            },
        );
        Claim::Fresh
    }

    /// The request with `key` was accepted with `answer`.
    pub fn accepted(&self, table: &str, key: &str, answer: String) {
        if let Some(entry) = crate::stream::lock(&self.seen)
            .keys
            .get_mut(&(table.to_string(), key.to_string()))
        {
            entry.answer = Some(answer);
        }
    }

    /// The request with `key` failed: a retry with the key may try again.
    pub fn failed(&self, table: &str, key: &str) {
        crate::stream::lock(&self.seen)
            .keys
            .remove(&(table.to_string(), key.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_answered_once_and_bound_to_its_body() {
        let keys = IdempotencyKeys::new(10);
        assert_eq!(keys.claim("events", "k1", b"{}"), Claim::Fresh);
        assert_eq!(keys.claim("events", "k1", b"{}"), Claim::InFlight);
        keys.accepted("events", "k1", "answer".into());
        assert_eq!(
            keys.claim("events", "k1", b"{}"),
            Claim::Replay("answer".into())
        );
        assert_eq!(keys.claim("events", "k1", b"[]"), Claim::Conflict);
        // Another table has its own keys.
        assert_eq!(keys.claim("clicks", "k1", b"{}"), Claim::Fresh);
    }

    #[test]
    fn a_failed_request_frees_its_key_and_capacity_is_kept() {
        let keys = IdempotencyKeys::new(2);
        assert_eq!(keys.claim("t", "a", b"1"), Claim::Fresh);
        keys.failed("t", "a");
        assert_eq!(keys.claim("t", "a", b"1"), Claim::Fresh);
        keys.claim("t", "b", b"1");
        keys.claim("t", "c", b"1");
        let seen = crate::stream::lock(&keys.seen);
        assert!(seen.keys.len() <= 2 && seen.order.len() <= 2);
        // The newest claims are the ones kept.
        assert!(seen.keys.contains_key(&("t".to_string(), "c".to_string())));
    }
}
