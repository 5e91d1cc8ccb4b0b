//! What every operator of a running pipeline shares: its metrics and its stop signal.
//! It travels in DataFusion's session config as an extension, so operators reach it through
//! the task context rather than through globals.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::execution::TaskContext;
use datafusion::prelude::SessionConfig;
use tokio::sync::Notify;

use super::Watermark;
use super::histogram::Histogram;

/// Counters a running pipeline exposes (the status line and the final summary read them).
#[derive(Debug)]
pub struct PipelineMetrics {
    /// Rows read from every source.
    pub events_in: AtomicU64,
    /// Rows that arrived after their window was emitted (dropped or routed).
    pub late_rows: AtomicU64,
    /// Rows written to sinks.
    pub rows_out: AtomicU64,
    /// Rows sources dropped as duplicates of rows read before (`'dedup.key'`).
    pub duplicates: AtomicU64,
    /// Upserts a store skipped because it held the same or a newer version of the row.
    pub stale_upserts: AtomicU64,
    /// The most bytes one window operator's state has held at once.
    pub peak_state_bytes: AtomicU64,
    /// Checkpoints completed.
    pub checkpoints: AtomicU64,
    /// How long the last checkpoint took, in milliseconds.
    pub last_checkpoint_ms: AtomicU64,
    /// Checkpoints that failed (the one before stays the latest).
    pub checkpoint_failures: AtomicU64,
    /// When the last checkpoint completed, in milliseconds since the epoch (0: none yet).
    pub last_checkpoint_success_ms: AtomicU64,
    /// Lookup tables that could not be read again (the copy read before stays in use).
    pub lookup_refresh_failures: AtomicU64,
    /// What `enrich_http` did: cache hits, requests, failures, timeouts.
    pub enrich_http: Arc<profusion_udfs::enrich::http::EnrichStats>,
    /// How long each upsert into a profile store took (one transaction per batch).
    pub upsert_seconds: Histogram,
    /// How long each checkpoint took.
    pub checkpoint_seconds: Histogram,
    /// The most advanced watermark any source has reported, in nanoseconds.
    watermark: AtomicI64,
    /// Records skipped or dead-lettered by `bad_data`, by kind.
    bad_records: Mutex<BTreeMap<&'static str, u64>>,
    /// Rows read from and written to each table, by table name.
    tables: Mutex<BTreeMap<String, Arc<TableCounts>>>,
    /// Messages behind the end of each Kafka partition read, by `topic/partition`.
    consumer_lag: Mutex<BTreeMap<String, Arc<AtomicI64>>>,
}

/// Rows one table has handed to queries and received from them.
#[derive(Debug, Default)]
pub struct TableCounts {
    /// Rows read from the table's source.
    pub rows_in: AtomicU64,
    /// Rows handed to the table's sink.
    pub rows_out: AtomicU64,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        Self {
            events_in: AtomicU64::new(0),
            late_rows: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            stale_upserts: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            peak_state_bytes: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            last_checkpoint_ms: AtomicU64::new(0),
            checkpoint_failures: AtomicU64::new(0),
            last_checkpoint_success_ms: AtomicU64::new(0),
            lookup_refresh_failures: AtomicU64::new(0),
            enrich_http: Arc::default(),
            upsert_seconds: Histogram::default(),
            checkpoint_seconds: Histogram::default(),
            watermark: AtomicI64::new(Watermark::MIN.0),
            bad_records: Mutex::new(BTreeMap::new()),
            tables: Mutex::new(BTreeMap::new()),
            consumer_lag: Mutex::new(BTreeMap::new()),
        }
    }
}

impl PipelineMetrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records a source's watermark (the largest one reported is kept).
    pub fn observe_watermark(&self, watermark: Watermark) {
        if !watermark.is_end() {
            self.watermark.fetch_max(watermark.0, Ordering::Relaxed);
        }
    }

    /// Counts one bad record of `kind` that a source skipped or dead-lettered.
    pub fn count_bad_record(&self, kind: &'static str) {
        let mut counts = self.bad_records.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(kind).or_default() += 1;
    }

    /// Bad records skipped or dead-lettered so far, by kind.
    pub fn bad_records(&self) -> BTreeMap<&'static str, u64> {
        self.bad_records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The latest source watermark.
    pub fn watermark(&self) -> Watermark {
        Watermark(self.watermark.load(Ordering::Relaxed))
    }

    /// The counts of the table named `table`, made on first use.
    pub fn table(&self, table: &str) -> Arc<TableCounts> {
        let mut tables = super::lock(&self.tables);
        match tables.get(table) {
            Some(counts) => Arc::clone(counts),
            None => Arc::clone(tables.entry(table.to_string()).or_default()),
        }
    }

    /// Every table's counts so far, by name.
    pub fn tables(&self) -> Vec<(String, u64, u64)> {
        super::lock(&self.tables)
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    Self::read(&c.rows_in),
                    Self::read(&c.rows_out),
                )
            })
            .collect()
    }

    /// The lag gauge of one Kafka partition, made on first use; `-1` until measured.
    pub fn consumer_lag(&self, topic: &str, partition: i32) -> Arc<AtomicI64> {
        let mut lags = super::lock(&self.consumer_lag);
        Arc::clone(
            lags.entry(format!("{topic}/{partition}"))
                .or_insert_with(|| Arc::new(AtomicI64::new(-1))),
        )
    }

    /// The measured lag of every partition read, by `topic/partition`.
    pub fn consumer_lags(&self) -> Vec<(String, i64)> {
        super::lock(&self.consumer_lag)
            .iter()
            .map(|(name, lag)| (name.clone(), lag.load(Ordering::Relaxed)))
            .filter(|(_, lag)| *lag >= 0)
            .collect()
    }

    /// How far the watermark is behind the wall clock; `None` before any source reported
    /// one.
    pub fn watermark_lag(&self) -> Option<Duration> {
        let watermark = self.watermark();
        if watermark == Watermark::MIN {
            return None;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Some(Duration::from_nanos(
            now.saturating_sub(watermark.0).max(0) as u64
        ))
    }
}

/// Asks every source of a pipeline to stop reading (Ctrl-C): sources end their streams,
/// sinks flush what reached them, and windows that are still open are not emitted.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    /// Requests the stop.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// True once a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Completes when a stop is requested.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// The shared state of one running pipeline.
#[derive(Debug, Default)]
pub struct PipelineContext {
    pub metrics: PipelineMetrics,
    pub stop: StopSignal,
}

impl PipelineContext {
    /// The pipeline context of a task, or a fresh one when the session has none (a plain
    /// DataFusion session that registered profusion's tables).
    pub fn of_task(task: &TaskContext) -> Arc<PipelineContext> {
        Self::of_config(task.session_config())
    }

    /// The pipeline context stored in a session config, if any; a fresh one otherwise.
    pub fn of_config(config: &SessionConfig) -> Arc<PipelineContext> {
        config
            .get_extension::<PipelineContext>()
            .unwrap_or_default()
    }
}
