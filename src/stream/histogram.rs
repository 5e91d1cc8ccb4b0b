//! [`Histogram`]: a latency histogram with fixed buckets and atomic counts, cheap enough to
//! record on every upsert and every HTTP request. It is a metric of the `/metrics`
//! registry: clones share their counts, so the registry holds one and the code that
//! records holds another.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the buckets, in seconds: 50 µs to 5 minutes, about three per decade
/// (staleness behind a window is counted in minutes, an upsert in microseconds).
pub const BUCKET_BOUNDS: [f64; 19] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0, 30.0, 60.0, 300.0,
];

/// Counts of durations by bucket, with their sum.
#[derive(Debug, Clone, Default)]
pub struct Histogram(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    /// One count per bound, and one for durations above the last bound.
    buckets: [AtomicU64; BUCKET_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = BUCKET_BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKET_BOUNDS.len());
        let counts = &self.0;
        counts.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        counts
            .sum_nanos
            .fetch_add(duration.as_nanos() as u64, Ordering::Relaxed);
        counts.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// The sum of the durations recorded, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// (upper bound in seconds, durations in that bucket alone), the last bound `f64::MAX`
    /// for those above every bound: as the exposition encoder takes them.
    fn buckets(&self) -> Vec<(f64, u64)> {
        BUCKET_BOUNDS
            .iter()
            .chain([&f64::MAX])
            .zip(&self.0.buckets)
            .map(|(&bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(
            self.sum_seconds(),
            self.count(),
            &self.buckets(),
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(40));
        histogram.observe(Duration::from_micros(700));
        histogram.observe(Duration::from_secs(600));
        assert_eq!(histogram.count(), 3);
        let buckets = histogram.buckets();
        assert_eq!(buckets[0], (0.00005, 1));
        // 700 µs is at most 1 ms, the fifth bound.
        assert_eq!(buckets[4], (0.001, 1));
        // Ten minutes is above every bound: only the last bucket counts it.
        assert_eq!(buckets.last(), Some(&(f64::MAX, 1)));
        assert!((histogram.sum_seconds() - 600.00074).abs() < 1e-9);
    }

    #[test]
    fn clones_share_their_counts() {
        let histogram = Histogram::default();
        histogram.clone().observe(Duration::from_millis(3));
        assert_eq!(histogram.count(), 1);
    }
}
