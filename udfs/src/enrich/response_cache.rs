//! Answers of an HTTP endpoint by key, each reused until its time to live runs out, with
//! the oldest entries dropped first once the cache is full.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What an endpoint answered for a key: the value, or `None` for "no such key" (404).
pub type Answer = Option<String>;

/// A bounded cache of answers with a time to live.
#[derive(Debug)]
pub struct ResponseCache {
    capacity: usize,
    ttl: Duration,
    entries: HashMap<String, (Answer, Instant)>,
    /// Keys in the order they were stored, to drop the oldest first.
    order: VecDeque<(String, Instant)>,
}

impl ResponseCache {
    /// An empty cache of at most `capacity` answers, each kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity,
            ttl,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The answer stored for `key`, if it is still fresh at `now`.
    pub fn get(&self, key: &str, now: Instant) -> Option<&Answer> {
        let (answer, stored) = self.entries.get(key)?;
        (now.duration_since(*stored) < self.ttl).then_some(answer)
    }

    /// The answer stored for `key`, fresh or not (what an endpoint that is down last said).
    pub fn get_stale(&self, key: &str) -> Option<&Answer> {
        self.entries.get(key).map(|(answer, _)| answer)
    }

    /// Stores the answer for `key` at `now`.
    pub fn insert(&mut self, key: String, answer: Answer, now: Instant) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        while self.entries.len() >= self.capacity {
            let Some((oldest, stored)) = self.order.pop_front() else {
                break;
            };
            // Only the latest store of a key removes it.
            if self
                .entries
                .get(&oldest)
                .is_some_and(|(_, at)| *at == stored)
            {
                self.entries.remove(&oldest);
            }
        }
        self.order.push_back((key.clone(), now));
        self.entries.insert(key, (answer, now));
        if self.order.len() > 2 * self.capacity.max(16) {
            let entries = &self.entries;
            self.order
                .retain(|(k, at)| entries.get(k).is_some_and(|(_, stored)| stored == at));
        }
    }

    /// The number of answers held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no answer is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_drops_the_oldest() {
        let start = Instant::now();
        let mut cache = ResponseCache::new(2, Duration::from_secs(10));
        cache.insert("a".into(), Some("1".into()), start);
        cache.insert("b".into(), None, start);
        assert_eq!(cache.get("b", start), Some(&None));
        cache.insert("c".into(), Some("3".into()), start);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("a", start), None);
        assert_eq!(cache.get("c", start + Duration::from_secs(11)), None);
    }
}
