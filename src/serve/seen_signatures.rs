//! Signatures a table has taken within its timestamp tolerance: a signed request is taken
//! once. The signature covers the timestamp and the body but not `Idempotency-Key`, so
//! without this a captured request could be sent again, within the tolerance, under
//! another key (or none) and be written twice.
//!
//! Memory is bounded: at most `capacity` signatures are kept, the oldest forgotten first,
//! and a request sent no later than one forgotten for room is refused as too old (as if
//! the tolerance had shrunk for a moment), so nothing forgotten can come back.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// What a signed request's check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// Not seen before: take the request, and [`SeenSignatures::forget`] it if the write fails.
    Fresh,
    /// Taken before.
    Replayed,
    /// Sent no later than a signature forgotten for room: it cannot be told from a replay.
    TooOld,
}

/// The signatures one table has taken.
#[derive(Debug)]
pub struct SeenSignatures {
    tolerance: Duration,
    capacity: usize,
    seen: Mutex<Log>,
}

#[derive(Debug, Default)]
struct Log {
    tags: HashSet<[u8; 32]>,
    /// Tags with their sending times (seconds since the epoch), in the order taken.
    order: VecDeque<(i64, [u8; 32])>,
    /// Requests sent at or before this second are refused: a signature of that second
    /// may have been forgotten for room.
    floor: Option<i64>,
}

impl SeenSignatures {
    /// Remembers signatures for `tolerance` past their sending time, at most `capacity`.
    pub fn new(tolerance: Duration, capacity: usize) -> Self {
        Self {
            tolerance,
            capacity: capacity.max(1),
            seen: Mutex::default(),
        }
    }

    /// Records the use of `tag`, sent at `sent`, at `now` (both in seconds since the epoch).
    pub fn first_use(&self, tag: [u8; 32], sent: i64, now: i64) -> FirstUse {
        let mut log = crate::stream::lock(&self.seen);
        let tolerance = self.tolerance.as_secs() as i64;
        while let Some(&(at, oldest)) = log.order.front() {
            if at + tolerance >= now {
                break;
            }
            log.order.pop_front();
            log.tags.remove(&oldest);
        }
        if log.tags.contains(&tag) {
            return FirstUse::Replayed;
        }
        if log.floor.is_some_and(|floor| sent <= floor) {
            return FirstUse::TooOld;
        }
        while log.order.len() >= self.capacity {
            let Some((at, oldest)) = log.order.pop_front() else {
                break;
            };
            log.tags.remove(&oldest);
            log.floor = Some(log.floor.map_or(at, |floor| floor.max(at)));
        }
        log.tags.insert(tag);
        log.order.push_back((sent, tag));
        FirstUse::Fresh
    }

    /// The request signed `tag` was not written: a retry of it may be taken.
    pub fn forget(&self, tag: &[u8; 32]) {
        let mut log = crate::stream::lock(&self.seen);
        log.tags.remove(tag);
        log.order.retain(|(_, t)| t != tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn a_signature_is_taken_once_within_the_tolerance() {
        let seen = SeenSignatures::new(Duration::from_secs(300), 100);
        assert_eq!(seen.first_use(tag(1), 1_000, 1_000), FirstUse::Fresh);
        assert_eq!(seen.first_use(tag(1), 1_000, 1_200), FirstUse::Replayed);
        // Past the tolerance the timestamp check refuses it; the log may forget it.
        assert_eq!(seen.first_use(tag(2), 1_400, 1_400), FirstUse::Fresh);
        assert!(!crate::stream::lock(&seen.seen).tags.contains(&tag(1)));
    }

    #[test]
    fn a_failed_write_frees_its_signature() {
        let seen = SeenSignatures::new(Duration::from_secs(300), 100);
        assert_eq!(seen.first_use(tag(1), 1_000, 1_000), FirstUse::Fresh);
        seen.forget(&tag(1));
        assert_eq!(seen.first_use(tag(1), 1_000, 1_001), FirstUse::Fresh);
    }

    #[test]
    fn at_capacity_requests_as_old_as_a_forgotten_one_are_refused() {
        let seen = SeenSignatures::new(Duration::from_secs(300), 2);
        assert_eq!(seen.first_use(tag(1), 1_000, 1_000), FirstUse::Fresh);
        assert_eq!(seen.first_use(tag(2), 1_001, 1_001), FirstUse::Fresh);
        // Room for tag 3 forgets tag 1, sent at 1,000.
        assert_eq!(seen.first_use(tag(3), 1_002, 1_002), FirstUse::Fresh);
        assert_eq!(seen.first_use(tag(1), 1_000, 1_003), FirstUse::TooOld);
        assert_eq!(seen.first_use(tag(4), 1_003, 1_003), FirstUse::Fresh);
    }
}
