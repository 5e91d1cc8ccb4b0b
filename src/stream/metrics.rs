//! [`PipelineMetrics`]: what a running pipeline counts, by the part of the pipeline that
//! counts it: sources (events in and rows out per table, bad and duplicate records,
//! watermark and consumer lag), windows (late rows), sinks and profile views (rows out,
//! upserts, staleness), checkpoints, and enrichment. Each part registers its own metrics,
//! with help text, in the `/metrics` registry ([`PipelineMetrics::register`]); the status
//! line and the run summary read the same metrics back.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use profusion_udfs::enrich::http::EnrichStats;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::Watermark;
use super::histogram::Histogram;
use super::labelled::Labelled;

/// What a running pipeline counts. Clones of its metrics share their counts.
#[derive(Debug)]
pub struct PipelineMetrics {
    /// Rows read from every source.
    pub events_in: Counter,
    /// Rows that arrived after their window was emitted (dropped or routed).
    pub late_rows: Counter,
    /// Rows written to sinks.
    pub rows_out: Counter,
    /// Upserts a store skipped because it held the same or a newer version of the row.
    pub stale_upserts: Counter,
    /// The most bytes one window operator's state has held at once.
    pub peak_state_bytes: AtomicU64,
    /// Checkpoints completed.
    pub checkpoints: Counter,
    /// How long the last checkpoint took, in milliseconds.
    pub last_checkpoint_ms: AtomicU64,
    /// Checkpoints that failed (the one before stays the latest).
    pub checkpoint_failures: Counter,
    /// When the last checkpoint completed, in seconds since the epoch (0: none yet).
    pub last_checkpoint_success: Gauge<f64, AtomicU64>,
    /// Lookup tables that could not be read again (the copy read before stays in use).
    pub lookup_refresh_failures: Counter,
    /// What `enrich_http` did: cache hits, requests, failures, timeouts.
    pub enrich_http: Arc<EnrichStats>,
    /// How long each upsert into a profile store took (one transaction per batch).
    pub upsert_seconds: Histogram,
    /// How long each checkpoint took.
    pub checkpoint_seconds: Histogram,
    /// The most advanced watermark any source has reported, in nanoseconds.
    watermark: Arc<AtomicI64>,
    /// Records each source read, by table: before anything was dropped.
    source_events_in: Labelled<Counter>,
    /// Rows each source handed to queries, by table: after bad, future and duplicate rows.
    source_rows_out: Labelled<Counter>,
    /// Rows handed to each table's sink, by table.
    sink_rows_in: Labelled<Counter>,
    /// Records skipped or dead-lettered by `bad_data`, by table and kind.
    bad_records: Labelled<Counter>,
    /// Rows sources dropped as duplicates of rows read before (`'dedup.key'`), by table.
    duplicates: Labelled<Counter>,
    /// Messages behind the end of each Kafka partition read, by `topic/partition`.
    consumer_lag: Labelled<Gauge>,
    /// The time from rows being read to their upserts being readable, by view.
    profile_staleness: Labelled<Histogram>,
}

/// The counts of one table, kept by whoever reads or writes it on a hot path.
#[derive(Debug, Clone)]
pub struct TableCounts {
    table: String,
    /// Records the table's source read, before anything was dropped.
    pub events_in: Counter,
    /// Rows the table's source handed to queries.
    pub rows_in: Counter,
    /// Rows handed to the table's sink.
    pub rows_out: Counter,
    bad_records: Labelled<Counter>,
    /// Rows the source dropped as duplicates.
    pub duplicates: Counter,
}

impl TableCounts {
    /// Counts one record of `kind` that the table's source skipped or dead-lettered.
    pub fn bad_record(&self, kind: &'static str) {
        self.bad_records.get(&[&self.table, kind]).inc();
    }
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        Self {
            events_in: Counter::default(),
            late_rows: Counter::default(),
            rows_out: Counter::default(),
            stale_upserts: Counter::default(),
            peak_state_bytes: AtomicU64::new(0),
            checkpoints: Counter::default(),
            last_checkpoint_ms: AtomicU64::new(0),
            checkpoint_failures: Counter::default(),
            last_checkpoint_success: Gauge::default(),
            lookup_refresh_failures: Counter::default(),
            enrich_http: Arc::default(),
            upsert_seconds: Histogram::default(),
            checkpoint_seconds: Histogram::default(),
            watermark: Arc::new(AtomicI64::new(Watermark::MIN.0)),
            source_events_in: Labelled::new(&["table"]),
            source_rows_out: Labelled::new(&["table"]),
            sink_rows_in: Labelled::new(&["table"]),
            bad_records: Labelled::new(&["table", "reason"]),
            duplicates: Labelled::new(&["table"]),
            consumer_lag: Labelled::new(&["partition"]),
            profile_staleness: Labelled::new(&["view"]),
        }
    }
}

impl PipelineMetrics {
    /// Registers every metric of the pipeline in `registry`, part by part.
    pub fn register(&self, registry: &mut Registry) {
        self.register_sources(registry);
        self.register_windows(registry);
        self.register_sinks(registry);
        self.register_checkpoints(registry);
        self.register_enrichment(registry);
    }

    fn register_sources(&self, registry: &mut Registry) {
        registry.register(
            "events_in",
            "Rows read from every source",
            self.events_in.clone(),
        );
        registry.register(
            "source_events_in",
            "Records a table's source read, before bad, future and duplicate rows were dropped",
            self.source_events_in.clone(),
        );
        registry.register(
            "source_rows_out",
            "Rows a table's source handed to queries. Events in less rows out is what the source dropped: bad_records plus duplicate_rows",
            self.source_rows_out.clone(),
        );
        registry.register(
            "bad_records",
            "Records skipped or dead-lettered by bad_data, by table and reason",
            self.bad_records.clone(),
        );
        registry.register(
            "duplicate_rows",
            "Rows dropped as duplicates ('dedup.key'), by table",
            self.duplicates.clone(),
        );
        registry.register(
            "watermark_lag_seconds",
            "How far the watermark is behind the wall clock",
            WatermarkLag(Arc::clone(&self.watermark)),
        );
        registry.register(
            "consumer_lag_messages",
            "Messages behind the end of each Kafka partition read",
            self.consumer_lag.clone(),
        );
        registry.register(
            "lookup_refresh_failures",
            "Lookup tables that could not be read again",
            self.lookup_refresh_failures.clone(),
        );
    }

    fn register_windows(&self, registry: &mut Registry) {
        registry.register(
            "late_rows",
            "Rows that arrived after their window was emitted",
            self.late_rows.clone(),
        );
    }

    fn register_sinks(&self, registry: &mut Registry) {
        registry.register(
            "rows_out",
            "Rows written to every sink",
            self.rows_out.clone(),
        );
        registry.register(
            "table_rows_out",
            "Rows handed to a table's sink",
            self.sink_rows_in.clone(),
        );
        registry.register(
            "stale_upserts",
            "Upserts a store skipped as not newer than what it held",
            self.stale_upserts.clone(),
        );
        registry.register(
            "upsert_duration_seconds",
            "How long each upsert transaction into a profile store took",
            self.upsert_seconds.clone(),
        );
        registry.register(
            "profile_staleness_seconds",
            "Per view: the time from a batch of events being read from its source to the upserts they made being readable (after any window that held them). One observation per batch read",
            self.profile_staleness.clone(),
        );
    }

    fn register_checkpoints(&self, registry: &mut Registry) {
        registry.register(
            "checkpoints",
            "Checkpoints completed",
            self.checkpoints.clone(),
        );
        registry.register(
            "checkpoint_failures",
            "Checkpoints that failed; the one before stays the latest",
            self.checkpoint_failures.clone(),
        );
        registry.register(
            "checkpoint_last_success_seconds",
            "When the last checkpoint completed, in seconds since the Unix epoch (0: none yet)",
            self.last_checkpoint_success.clone(),
        );
        registry.register(
            "checkpoint_duration_seconds",
            "How long each checkpoint took",
            self.checkpoint_seconds.clone(),
        );
    }

    fn register_enrichment(&self, registry: &mut Registry) {
        registry.register(
            "enrich_http_failures",
            "enrich_http lookups that failed",
            EnrichFailures(Arc::clone(&self.enrich_http)),
        );
        registry.register(
            "enrich_http_outcomes",
            "What enrich_http did, by outcome: cache hits, requests, retries, not found, failures, timeouts, keys short-circuited by an open breaker, keys over their call's budget, expired answers given",
            EnrichOutcomes(Arc::clone(&self.enrich_http)),
        );
    }

    /// Records a source's watermark (the largest one reported is kept).
    pub fn observe_watermark(&self, watermark: Watermark) {
        if !watermark.is_end() {
            self.watermark.fetch_max(watermark.0, Ordering::Relaxed);
        }
    }

    /// The latest source watermark.
    pub fn watermark(&self) -> Watermark {
        Watermark(self.watermark.load(Ordering::Relaxed))
    }

    /// The counts of the table named `table`, made on first use.
    pub fn table(&self, table: &str) -> TableCounts {
        TableCounts {
            table: table.to_string(),
            events_in: self.source_events_in.get(&[table]),
            rows_in: self.source_rows_out.get(&[table]),
            rows_out: self.sink_rows_in.get(&[table]),
            bad_records: self.bad_records.clone(),
            duplicates: self.duplicates.get(&[table]),
        }
    }

    /// Bad records skipped or dead-lettered so far, by kind, over every table.
    pub fn bad_records(&self) -> std::collections::BTreeMap<String, u64> {
        let mut by_kind = std::collections::BTreeMap::new();
        for (labels, count) in self.bad_records.series() {
            *by_kind.entry(labels[1].clone()).or_default() += count.get();
        }
        by_kind
    }

    /// Rows dropped as duplicates so far, over every table.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.series().iter().map(|(_, c)| c.get()).sum()
    }

    /// The lag gauge of one Kafka partition, made on first use.
    pub fn consumer_lag(&self, topic: &str, partition: i32) -> Gauge {
        self.consumer_lag.get(&[&format!("{topic}/{partition}")])
    }

    /// The staleness histogram of the view named `view`, made on first use.
    pub fn profile_staleness(&self, view: &str) -> Histogram {
        self.profile_staleness.get(&[view])
    }
}

/// How far `watermark` is behind the wall clock; `None` before any source reported one.
fn watermark_lag(watermark: Watermark) -> Option<Duration> {
    if watermark == Watermark::MIN {
        return None;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    Some(Duration::from_nanos(
        now.saturating_sub(watermark.0).max(0) as u64
    ))
}

/// The watermark's lag behind the wall clock, as a gauge read when scraped; absent until a
/// source reports a watermark.
#[derive(Debug)]
struct WatermarkLag(Arc<AtomicI64>);

impl TypedMetric for WatermarkLag {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for WatermarkLag {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let lag = watermark_lag(Watermark(self.0.load(Ordering::Relaxed)));
        encoder.encode_gauge(&lag.map_or(0.0, |lag| lag.as_secs_f64()))
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }

    fn is_empty(&self) -> bool {
        Watermark(self.0.load(Ordering::Relaxed)) == Watermark::MIN
    }
}

/// `enrich_http`'s failed lookups, as a counter (the functions crate keeps plain atomics).
#[derive(Debug)]
struct EnrichFailures(Arc<EnrichStats>);

impl TypedMetric for EnrichFailures {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for EnrichFailures {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.0.failures.load(Ordering::Relaxed), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// `enrich_http`'s outcomes, a counter per outcome.
#[derive(Debug)]
struct EnrichOutcomes(Arc<EnrichStats>);

impl TypedMetric for EnrichOutcomes {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for EnrichOutcomes {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (outcome, n) in self.0.snapshot() {
            encoder
                .encode_family(&[("outcome", outcome)])?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(metrics: &PipelineMetrics) -> String {
        let mut registry = Registry::with_prefix("profusion");
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn every_metric_has_help_and_a_type() {
        let metrics = PipelineMetrics::default();
        metrics.table("events").events_in.inc_by(5);
        let text = exposition(&metrics);
        let mut families = 0;
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            families += 1;
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: no help");
        }
        assert!(families >= 19, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            !text.contains("..\n"),
            "help text ends in one period: {text}"
        );
    }

    #[test]
    fn a_table_counts_what_its_source_read_dropped_and_handed_on() {
        let metrics = PipelineMetrics::default();
        let events = metrics.table("events");
        events.events_in.inc_by(10);
        events.bad_record("json");
        events.duplicates.inc_by(2);
        events.rows_in.inc_by(7);
        metrics
            .profile_staleness("profile")
            .observe(Duration::from_millis(30));
        let text = exposition(&metrics);
        for line in [
            "profusion_source_events_in_total{table=\"events\"} 10\n",
            "profusion_source_rows_out_total{table=\"events\"} 7\n",
            "profusion_bad_records_total{table=\"events\",reason=\"json\"} 1\n",
            "profusion_duplicate_rows_total{table=\"events\"} 2\n",
            "profusion_profile_staleness_seconds_bucket{le=\"0.05\",view=\"profile\"} 1\n",
            "profusion_profile_staleness_seconds_count{view=\"profile\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
        assert_eq!(metrics.bad_records().get("json"), Some(&1));
        assert_eq!(metrics.duplicates(), 2);
    }

    #[test]
    fn the_watermark_lag_appears_once_a_watermark_is_reported() {
        let metrics = PipelineMetrics::default();
        assert!(!exposition(&metrics).contains("profusion_watermark_lag_seconds"));
        metrics.observe_watermark(Watermark(0));
        assert!(exposition(&metrics).contains("\nprofusion_watermark_lag_seconds "));
    }
}
