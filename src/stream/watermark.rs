//! Event-time watermarks: per split, the largest watermark-expression value seen; merged
//! across splits as the minimum, skipping splits that ended or have been idle for longer
//! than the table's `'watermark.idle_timeout'`.

use std::time::{Duration, Instant};

/// A point in event time, in nanoseconds since the Unix epoch: every row still to come has
/// an event time at or after it. [`Watermark::END`] is the end of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(pub i64);

impl Watermark {
    /// Before any event: nothing is complete yet.
    pub const MIN: Watermark = Watermark(i64::MIN);
    /// The end of time: every input ended, every window is complete.
    pub const END: Watermark = Watermark(i64::MAX);

    /// True once every input has ended.
    pub fn is_end(self) -> bool {
        self == Self::END
    }
}

impl std::fmt::Display for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::MIN => write!(f, "-"),
            Self::END => write!(f, "end of input"),
            Watermark(nanos) => {
                match datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime(nanos) {
                    Some(time) => write!(f, "{}", time.format("%Y-%m-%d %H:%M:%S%.3f")),
                    None => write!(f, "{nanos}ns"),
                }
            }
        }
    }
}

/// Tracks the watermark of one source across its splits.
#[derive(Debug)]
pub struct WatermarkTracker {
    splits: Vec<SplitProgress>,
    idle_timeout: Option<Duration>,
    current: Watermark,
}

#[derive(Debug, Clone)]
struct SplitProgress {
    watermark: Watermark,
    last_active: Instant,
    finished: bool,
}

impl WatermarkTracker {
    /// A tracker for `splits` splits, all active as of `now`.
    pub fn new(splits: usize, idle_timeout: Option<Duration>, now: Instant) -> Self {
        let progress = SplitProgress {
            watermark: Watermark::MIN,
            last_active: now,
            finished: false,
        };
        Self {
            splits: vec![progress; splits],
            idle_timeout,
            current: if splits == 0 {
                Watermark::END
            } else {
                Watermark::MIN
            },
        }
    }

    /// Records that `split` produced rows whose largest watermark-expression value is `max`.
    pub fn observe(&mut self, split: usize, max: Option<Watermark>, now: Instant) {
        let progress = &mut self.splits[split];
        progress.last_active = now;
        if let Some(max) = max {
            progress.watermark = progress.watermark.max(max);
        }
    }

    /// Records that `split` has no more rows.
    pub fn finish(&mut self, split: usize) {
        self.splits[split].finished = true;
    }

    /// Each split's watermark and the merged one, for a checkpoint.
    pub fn snapshot(&self) -> (Vec<i64>, i64) {
        (
            self.splits.iter().map(|s| s.watermark.0).collect(),
            self.current.0,
        )
    }

    /// Takes back a snapshot: the splits it knew (a topic may have gained partitions since)
    /// and the merged watermark, which then never moves below it.
    pub fn restore(&mut self, splits: &[i64], current: i64) {
        for (split, &watermark) in self.splits.iter_mut().zip(splits) {
            split.watermark = Watermark(watermark);
        }
        self.current = self.current.max(Watermark(current));
    }

    /// True when every split that has not ended has been quiet for the idle timeout as of
    /// `now` (false without a timeout, or when every split has ended).
    pub fn all_idle(&self, now: Instant) -> bool {
        let Some(timeout) = self.idle_timeout else {
            return false;
        };
        let mut open = self.splits.iter().filter(|s| !s.finished).peekable();
        open.peek().is_some() && open.all(|s| now.duration_since(s.last_active) > timeout)
    }

    /// The merged watermark as of `now`; it never moves backwards.
    pub fn current(&mut self, now: Instant) -> Watermark {
        let open: Vec<&SplitProgress> = self.splits.iter().filter(|s| !s.finished).collect();
        let merged = if open.is_empty() {
            Watermark::END
        } else {
            let is_idle = |s: &SplitProgress| {
                self.idle_timeout
                    .is_some_and(|timeout| now.duration_since(s.last_active) > timeout)
            };
            let active = open.iter().filter(|s| !is_idle(s));
            match active.map(|s| s.watermark).min() {
                Some(min) => min,
                // Every open split is idle: none holds the others back.
                None => open
                    .iter()
                    .map(|s| s.watermark)
                    .max()
                    .unwrap_or(Watermark::MIN),
            }
        };
        self.current = self.current.max(merged);
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, millis: u64) -> Instant {
        base + Duration::from_millis(millis)
    }

    #[test]
    fn merges_as_the_minimum_over_splits() {
        let t0 = Instant::now();
        let mut tracker = WatermarkTracker::new(2, None, t0);
        tracker.observe(0, Some(Watermark(100)), t0);
        assert_eq!(
            tracker.current(t0),
            Watermark::MIN,
            "split 1 has seen nothing"
        );
        tracker.observe(1, Some(Watermark(40)), t0);
        assert_eq!(tracker.current(t0), Watermark(40));
        tracker.observe(1, Some(Watermark(30)), t0);
        assert_eq!(tracker.current(t0), Watermark(40), "never moves backwards");
    }

    #[test]
    fn idle_splits_stop_holding_it_back() {
        let t0 = Instant::now();
        let mut tracker = WatermarkTracker::new(2, Some(Duration::from_millis(100)), t0);
        tracker.observe(0, Some(Watermark(10)), t0);
        tracker.observe(1, Some(Watermark(500)), at(t0, 150));
        assert_eq!(tracker.current(at(t0, 50)), Watermark(10));
        assert_eq!(tracker.current(at(t0, 150)), Watermark(500), "split 0 idle");
        tracker.observe(0, Some(Watermark(20)), at(t0, 160));
        assert_eq!(tracker.current(at(t0, 160)), Watermark(500), "monotonic");
    }

    #[test]
    fn finished_splits_do_not_hold_it_back_and_all_finished_is_the_end() {
        let t0 = Instant::now();
        let mut tracker = WatermarkTracker::new(2, None, t0);
        tracker.observe(0, Some(Watermark(10)), t0);
        tracker.observe(1, Some(Watermark(70)), t0);
        tracker.finish(0);
        assert_eq!(tracker.current(t0), Watermark(70));
        tracker.finish(1);
        assert_eq!(tracker.current(t0), Watermark::END);
    }
}
