//! `profusion bench`: the hot paths, measured on one worker thread.
//!
//! Inputs are generated (and, for the file benchmarks, written) before the clock starts;
//! each benchmark times one pipeline from its source to a `blackhole` sink.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::bench_kafka::KafkaBench;
use super::bench_store::StoreBench;
use super::bench_udfs::UdfBench;
use crate::error::{Error, Result};
use crate::pipeline::PipelineMetrics;
use crate::sql::parse_pipeline;
use crate::{Engine, SessionOptions};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Events per benchmark.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Distinct users in the generated events.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Open (key, window) groups for the state-memory benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    groups: u64,
    /// Run only the benchmarks whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Runs per benchmark: the fastest is reported (the one least disturbed by other work on
    /// the machine), with the median beside it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// A Kafka broker (`host:port`) for the Kafka benchmarks (`kafka_consume`, `kafka_json`,
    /// `kafka_tumble`, `profile_latency`, `restart`); they are skipped without one. A topic
    /// is created for each.
    #[arg(long)]
    kafka: Option<String>,
    /// Events per second for `profile_latency` (with `--kafka`), requests per second for
    /// `serve_get`.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Requests of `serve_get`, sent at `--rate` per second.
    #[arg(long, default_value_t = 200_000)]
    requests: u64,
    /// Load threads of `serve_get`, each with its own keep-alive connection.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// A PostgreSQL connection URL for `postgres_upsert`; skipped without one. A table
    /// named `profusion_bench_<n>` is created in it (and dropped afterwards).
    #[arg(long)]
    postgres: Option<String>,
}

const COLUMNS: &str = "user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL";
pub(super) const TUMBLE: &str = "SELECT user_id, window_start, window_end, count(*), sum(amount)
     FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY user_id, window_start, window_end";
const HOP: &str = "SELECT user_id, window_start, window_end, count(*), sum(amount)
     FROM HOP(events, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE) GROUP BY user_id, window_start, window_end";

pub async fn bench(args: BenchArgs) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                context: "starting the benchmark runtime".into(),
                source,
            })?;
        runtime.block_on(run_all(args))
    })
    .await
    .map_err(|e| Error::Io {
        context: "benchmark".into(),
        source: std::io::Error::other(e.to_string()),
    })?
}

async fn run_all(args: BenchArgs) -> Result<()> {
    let selected = |name: &str| args.only.as_deref().is_none_or(|only| name.contains(only));
    let dir = tempdir()?;
    let json = dir.join("events.jsonl");
    let generated = format!(
        "CREATE TABLE generated ({COLUMNS}) WITH (connector = 'datagen', count = {}, users = {}, seed = 1, out_of_order = '2s');",
        args.events, args.users
    );
    println!(
        "one worker thread; {} events, {} users\n",
        args.events, args.users
    );
    println!(
        "{:<16} {:>12} {:>10} {:>12} {:>12}  notes",
        "benchmark", "events", "seconds", "events/s", "median/s"
    );
    let repeat = args.repeat;

    if selected("json_decode") || selected("json_tumble") {
        let json_table = format!(
            "CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
               WITH (connector = 'file', path = '{}', format = 'json');",
            json.display()
        );
        setup(&format!(
            "{generated} CREATE TABLE out ({COLUMNS}) WITH (connector = 'file', path = '{}', format = 'json');
             INSERT INTO out SELECT * FROM generated;",
            json.display()
        ))
        .await?;
        if selected("json_decode") {
            let query = format!(
                "{json_table} {}",
                into_blackhole("SELECT * FROM events", COLUMNS)
            );
            let run = best_of(repeat, || timed_after("", &query)).await?;
            run.report("json_decode", "JSON lines file -> Arrow batches");
        }
        if selected("json_tumble") {
            let query = format!("{json_table} {}", into_blackhole(TUMBLE, WINDOW_COLUMNS));
            let run = best_of(repeat, || timed_after("", &query)).await?;
            run.report(
                "json_tumble",
                "JSON lines file -> TUMBLE(1m) count, sum per user",
            );
        }
        let _ = std::fs::remove_file(&json);
    }

    let memory_table = format!(
        "{generated} CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH (connector = 'memory'); INSERT INTO events SELECT * FROM generated;"
    );
    for (name, query, notes) in [
        (
            "batches_tumble",
            TUMBLE,
            "Arrow batches -> TUMBLE(1m) count, sum per user",
        ),
        (
            "batches_hop",
            HOP,
            "Arrow batches -> HOP(10s, 1m) count, sum per user",
        ),
    ] {
        if selected(name) {
            let query = into_blackhole(query, WINDOW_COLUMNS);
            let run = best_of(repeat, || timed_after(&memory_table, &query)).await?;
            run.report(name, notes);
        }
    }

    if selected("state_memory") {
        // Every event its own key, all in one open window: `groups` groups at once.
        let setup = format!(
            "CREATE TABLE generated (event_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
               WITH (connector = 'datagen', count = {}, step = '1us', seed = 1);
             CREATE TABLE events (event_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL,
               WATERMARK FOR ts AS ts) WITH (connector = 'memory');
             INSERT INTO events SELECT * FROM generated;",
            args.groups
        );
        let query = "CREATE TABLE sink (event_id TEXT, n BIGINT, total DOUBLE) WITH (connector = 'blackhole');
             INSERT INTO sink SELECT event_id, count(*), sum(amount)
             FROM TUMBLE(events, ts, INTERVAL '1' HOUR) GROUP BY event_id, window_start, window_end;";
        let run = best_of(repeat, || timed_after(&setup, query)).await?;
        let state = run.peak_state_bytes as f64;
        let arrow = run.output_bytes as f64;
        run.report(
            "state_memory",
            &format!(
                "{} groups: peak state {:.1} MiB, Arrow size of keys+aggregates {:.1} MiB, ratio {:.2}",
                args.groups,
                state / 1048576.0,
                arrow / 1048576.0,
                state / arrow
            ),
        );
    }
    UdfBench {
        rows: args.events * 5,
        repeat,
        dir: &dir,
    }
    .run(&selected)
    .await?;
    StoreBench {
        events: args.events,
        users: args.users,
        repeat,
        dir: &dir,
        postgres: args.postgres.as_deref(),
    }
    .run(&selected)
    .await?;
    if selected("serve_get") || selected("serve_ingest") {
        // Profiles the server's cache holds (100,000 rows a view by default).
        super::bench_serve::serve_benchmarks(
            &selected,
            args.connections.max(1),
            args.users.min(50_000),
            args.rate,
            args.requests,
            &dir,
        )?;
    }
    if args.kafka.is_some()
        || args
            .only
            .as_deref()
            .is_some_and(|o| o.contains("kafka") || o.contains("latency") || o.contains("restart"))
    {
        match &args.kafka {
            Some(servers) => {
                let kafka = KafkaBench {
                    servers,
                    events: args.events,
                    users: args.users,
                    repeat,
                    dir: &dir,
                };
                if ["kafka_consume", "kafka_json", "kafka_tumble"]
                    .iter()
                    .any(|name| selected(name))
                {
                    kafka.run(&selected).await?;
                }
                if selected("profile_latency") {
                    super::bench_latency::profile_latency(servers, args.rate, args.events, &dir)
                        .await?;
                }
                if selected("restart") {
                    super::bench_restart::restart_to_caught_up(
                        servers,
                        args.events,
                        args.users,
                        &dir,
                    )
                    .await?;
                }
            }
            None => println!("kafka_*: skipped (give a broker with --kafka host:port)"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

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
    /// Rows the sinks wrote.
    pub(super) rows_out: u64,
}

impl Run {
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

/// Runs every statement of `text` untimed.
pub(super) async fn setup(text: &str) -> Result<Engine> {
    setup_with(&SessionOptions::default(), text).await
}

/// Runs every statement of `text` untimed, in a session with `options`.
pub(super) async fn setup_with(options: &SessionOptions, text: &str) -> Result<Engine> {
    let engine = Engine::new(options)?;
    for statement in parse_pipeline(text)? {
        if let Some(job) = engine.submit(statement).await? {
            engine.drain(&job, |_| Ok(())).await?;
        }
    }
    Ok(engine)
}

/// Runs `setup_text` untimed, then times the queries of `text` in the same engine.
pub(super) async fn timed_after(setup_text: &str, text: &str) -> Result<Run> {
    timed_after_with(&SessionOptions::default(), setup_text, text).await
}

/// [`timed_after`] in a session with `options`.
pub(super) async fn timed_after_with(
    options: &SessionOptions,
    setup_text: &str,
    text: &str,
) -> Result<Run> {
    let engine = setup_with(options, setup_text).await?;
    let events_before = PipelineMetrics::read(&engine.shared().metrics.events_in);
    let rows_before = PipelineMetrics::read(&engine.shared().metrics.rows_out);
    let mut jobs = Vec::new();
    for statement in parse_pipeline(text)? {
        if let Some(job) = engine.submit(statement).await? {
            jobs.push(job);
        }
    }
    let started = Instant::now();
    for job in &jobs {
        engine.drain(job, |_| Ok(())).await?;
    }
    let elapsed = started.elapsed();
    let metrics = &engine.shared().metrics;
    let output_bytes = jobs
        .iter()
        .filter_map(|job| sink_bytes(job.plan.as_ref()))
        .sum();
    Ok(Run {
        events: PipelineMetrics::read(&metrics.events_in) - events_before,
        elapsed,
        median: elapsed,
        peak_state_bytes: metrics.peak_state_bytes.load(Ordering::Relaxed),
        output_bytes,
        rows_out: PipelineMetrics::read(&metrics.rows_out) - rows_before,
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

fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("profusion-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        context: format!("creating {}", dir.display()),
        source,
    })?;
    Ok(dir)
}
