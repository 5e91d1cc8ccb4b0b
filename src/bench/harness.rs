//! The harness every benchmark shares: run setup statements untimed, time a pipeline from
//! its source to a `blackhole` sink, keep the best of repeated runs, and report a line.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sql::parse_pipeline;
use crate::{Engine, JobKind, SessionOptions};

/// A per-user tumbling window, the query most benchmarks time.
pub(super) const TUMBLE: &str = "SELECT user_id, window_start, window_end, count(*), sum(amount)
     FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY user_id, window_start, window_end";

pub(super) const WINDOW_COLUMNS: &str =
    "user_id TEXT, window_start TIMESTAMP, window_end TIMESTAMP, n BIGINT, total DOUBLE";

pub(super) fn into_blackhole(query: &str, columns: &str) -> String {
    format!(
        "CREATE TABLE sink ({columns}) WITH (connector = 'blackhole'); INSERT INTO sink {query};"
    )
}

pub(super) struct Run {
    pub(super) events: u64,
    pub(super) elapsed: Duration,
    /// The median of repeated runs' times (the only time of a single run).
    pub(super) median: Duration,
    pub(super) peak_state_bytes: u64,
    pub(super) output_bytes: u64,
    /// Rows the sinks wrote, and the rows queries returned.
    pub(super) rows_out: u64,
}

impl Run {
    /// The run's speed over `bytes` of input, best and median, for notes: `312 MB/s
    /// (median 290)`.
    pub(super) fn megabytes_per_second(&self, bytes: u64) -> String {
        let rate = |elapsed: Duration| bytes as f64 / 1e6 / elapsed.as_secs_f64();
        format!(
            "{:.0} MB/s (median {:.0})",
            rate(self.elapsed),
            rate(self.median)
        )
    }

    pub(super) fn report(&self, name: &str, notes: &str) {
        let per_second =
            |elapsed: Duration| format!("{:.0}", self.events as f64 / elapsed.as_secs_f64());
        println!(
            "{name:<16} {:>12} {:>10.3} {:>12} {:>12}  {notes}",
            self.events,
            self.elapsed.as_secs_f64(),
            per_second(self.elapsed),
            per_second(self.median),
        );
    }
}

/// Runs a benchmark `times` times: the fastest run, with the median time.
pub(super) async fn best_of<F: Future<Output = Result<Run>>>(
    times: u32,
    mut run: impl FnMut() -> F,
) -> Result<Run> {
    let mut runs = Vec::new();
    for _ in 0..times {
        runs.push(run().await?);
    }
    let mut times: Vec<Duration> = runs.iter().map(|r| r.elapsed).collect();
    times.sort();
    let median = times[times.len() / 2];
    let mut best = runs
        .into_iter()
        .min_by_key(|r| r.elapsed)
        .ok_or_else(|| Error::Io {
            context: "benchmark".into(),
            source: std::io::Error::other("no runs"),
        })?;
    best.median = median;
    Ok(best)
}

/// Runs every statement of `text` untimed, in a session with `options`.
pub(super) async fn setup(options: &SessionOptions, text: &str) -> Result<Engine> {
    let engine = Engine::new(options)?;
    for statement in parse_pipeline(text)? {
        if let Some(job) = engine.submit(statement).await? {
            engine.drain(&job, |_| Ok(())).await?;
        }
    }
    Ok(engine)
}

/// Runs `setup_text` untimed, then times the queries of `text` in the same engine, a
/// session with `options`.
pub(super) async fn timed_after(
    options: &SessionOptions,
    setup_text: &str,
    text: &str,
) -> Result<Run> {
    let engine = setup(options, setup_text).await?;
    let events_before = engine.shared().metrics.events_in.get();
    let rows_before = engine.shared().metrics.rows_out.get();
    let mut jobs = Vec::new();
    for statement in parse_pipeline(text)? {
        if let Some(job) = engine.submit(statement).await? {
            jobs.push(job);
        }
    }
    let started = Instant::now();
    // Rows a query (a SELECT, which no sink counts) hands back.
    let mut selected = 0;
    for job in &jobs {
        let query = matches!(job.kind, JobKind::Query);
        engine
            .drain(job, |batch| {
                if query {
                    selected += batch.num_rows() as u64;
                }
                Ok(())
            })
            .await?;
    }
    let elapsed = started.elapsed();
    let metrics = &engine.shared().metrics;
    let output_bytes = jobs
        .iter()
        .filter_map(|job| sink_bytes(job.plan.as_ref()))
        .sum();
    Ok(Run {
        events: metrics.events_in.get() - events_before,
        elapsed,
        median: elapsed,
        peak_state_bytes: metrics.peak_state_bytes.load(Ordering::Relaxed),
        output_bytes,
        rows_out: metrics.rows_out.get() - rows_before + selected,
    })
}

/// Bytes received by the blackhole sink at the top of `plan`.
fn sink_bytes(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> Option<u64> {
    let sink = plan.downcast_ref::<datafusion::datasource::sink::DataSinkExec>()?;
    let counted =
        (sink.sink() as &dyn std::any::Any).downcast_ref::<crate::connector::CountingSink>()?;
    let blackhole = (counted.inner().as_ref() as &dyn std::any::Any)
        .downcast_ref::<crate::connector::blackhole::BlackholeSink>()?;
    Some(blackhole.bytes.load(Ordering::Relaxed))
}

pub(super) fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("profusion-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        context: format!("creating {}", dir.display()),
        source,
    })?;
    Ok(dir)
}

/// An error of a benchmark step, with its cause.
pub(super) fn failed(context: &str, error: impl std::fmt::Display) -> Error {
    Error::Io {
        context: context.to_string(),
        source: std::io::Error::other(error.to_string()),
    }
}
