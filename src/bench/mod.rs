//! `profusion bench`: the hot paths, measured on one worker thread. The command line and
//! the order benchmarks run in live here; what they share is in [`harness`].
//!
//! Inputs are generated (and, for the file benchmarks, written) before the clock starts;
//! each benchmark times one pipeline from its source to a `blackhole` sink.

mod harness;
mod joins;
mod kafka;
mod latency;
mod nexmark;
mod restart;
mod serve;
mod store;
mod udfs;

use clap::Args;

use crate::SessionOptions;
use crate::error::{Error, Result};
use harness::{TUMBLE, WINDOW_COLUMNS, best_of, into_blackhole, setup, tempdir, timed_after};
use joins::JoinBench;
use kafka::KafkaBench;
use nexmark::NexmarkBench;
use store::StoreBench;
use udfs::UdfBench;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Events per benchmark.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Distinct users in the generated events.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Events (of all three kinds) per Nexmark query.
    #[arg(long, default_value_t = 10_000_000)]
    nexmark_events: u64,
    /// Open (key, window) groups for the state-memory benchmark, and keys of the interval
    /// join.
    #[arg(long, default_value_t = 1_000_000)]
    groups: u64,
    /// Run only the benchmarks whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Runs per benchmark: the fastest is reported (the one least disturbed by other work on
    /// the machine), with the median beside it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Workers each benchmark's queries run on (and the runtime's threads): 1 measures one
    /// core; `--workers 2` against it measures how a query spreads over cores.
    #[arg(long, default_value_t = 1, value_parser = crate::cli::parse_workers)]
    workers: usize,
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
const HOP: &str = "SELECT user_id, window_start, window_end, count(*), sum(amount)
     FROM HOP(events, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE) GROUP BY user_id, window_start, window_end";

pub async fn bench(args: BenchArgs) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let runtime = match args.workers {
            1 => tokio::runtime::Builder::new_current_thread(),
            workers => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(workers);
                builder
            }
        }
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

/// The columns of Nexmark's bids.
const BID_COLUMNS: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT, \
                           date_time TIMESTAMP NOT NULL, extra TEXT";

async fn run_all(args: BenchArgs) -> Result<()> {
    let selected = |name: &str| args.only.as_deref().is_none_or(|only| name.contains(only));
    let dir = tempdir()?;
    let json = dir.join("events.jsonl");
    let generated = format!(
        "CREATE TABLE generated ({COLUMNS}) WITH (connector = 'datagen', count = {}, users = {}, seed = 1, out_of_order = '2s');",
        args.events, args.users
    );
    let options = SessionOptions {
        workers: args.workers,
        ..SessionOptions::default()
    };
    println!(
        "{} worker thread(s); {} events, {} users\n",
        args.workers, args.events, args.users
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
        setup(&options, &format!(
            "{generated} CREATE TABLE out ({COLUMNS}) WITH (connector = 'file', path = '{}', format = 'json');
             INSERT INTO out SELECT * FROM generated;",
            json.display()
        ))
        .await?;
        let bytes = std::fs::metadata(&json).map_or(0, |m| m.len());
        if selected("json_decode") {
            let query = format!(
                "{json_table} {}",
                into_blackhole("SELECT * FROM events", COLUMNS)
            );
            let run = best_of(repeat, || timed_after(&options, "", &query)).await?;
            run.report(
                "json_decode",
                &format!(
                    "JSON lines file -> Arrow batches, {}",
                    run.megabytes_per_second(bytes)
                ),
            );
        }
        if selected("json_tumble") {
            let query = format!("{json_table} {}", into_blackhole(TUMBLE, WINDOW_COLUMNS));
            let run = best_of(repeat, || timed_after(&options, "", &query)).await?;
            run.report(
                "json_tumble",
                &format!(
                    "JSON lines file -> TUMBLE(1m) count, sum per user, {}",
                    run.megabytes_per_second(bytes)
                ),
            );
        }
        let _ = std::fs::remove_file(&json);
    }

    if selected("json_decode_bids") {
        let bids = dir.join("bids.jsonl");
        // Bids are 92% of Nexmark's events: as many events as asked for, in bids.
        setup(
            &options,
            &format!(
                "CREATE TABLE bid ({BID_COLUMNS}) WITH (connector = 'nexmark', table = 'bid',
                   events = {}, rate = 0, seed = 0);
                 CREATE TABLE bids_file ({BID_COLUMNS}) WITH (connector = 'file', path = '{}', format = 'json');
                 INSERT INTO bids_file SELECT * FROM bid;",
                args.events * 50 / 46,
                bids.display()
            ),
        )
        .await?;
        let bytes = std::fs::metadata(&bids).map_or(0, |m| m.len());
        let query = format!(
            "CREATE TABLE bids ({BID_COLUMNS}, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
               WITH (connector = 'file', path = '{}', format = 'json'); {}",
            bids.display(),
            into_blackhole("SELECT * FROM bids", BID_COLUMNS)
        );
        let run = best_of(repeat, || timed_after(&options, "", &query)).await?;
        run.report(
            "json_decode_bids",
            &format!(
                "Nexmark bids as JSON lines (~{} bytes) -> Arrow batches, {}",
                bytes / run.events.max(1),
                run.megabytes_per_second(bytes)
            ),
        );
        let _ = std::fs::remove_file(&bids);
    }

    let memory_table = format!(
        "{generated} CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH (connector = 'memory', splits = 4); INSERT INTO events SELECT * FROM generated;"
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
            let run = best_of(repeat, || timed_after(&options, &memory_table, &query)).await?;
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
        let run = best_of(repeat, || timed_after(&options, &setup, query)).await?;
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
    JoinBench {
        options: &options,
        events: args.events,
        keys: args.groups,
        repeat,
    }
    .run(&selected)
    .await?;
    NexmarkBench {
        options: &options,
        events: args.nexmark_events,
        repeat,
    }
    .run(&selected)
    .await?;
    UdfBench {
        rows: args.events * 5,
        repeat,
        dir: &dir,
    }
    .run(&selected)
    .await?;
    StoreBench {
        options: &options,
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
        serve::serve_benchmarks(
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
                    options: &options,
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
                    latency::profile_latency(servers, args.rate, args.events, &dir).await?;
                }
                if selected("restart") {
                    restart::restart_to_caught_up(servers, args.events, args.users, &dir).await?;
                }
            }
            None => println!("kafka_*: skipped (give a broker with --kafka host:port)"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
