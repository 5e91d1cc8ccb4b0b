//! `restart` (with `--kafka`): how long a pipeline restarted from its latest checkpoint
//! takes to catch up. A profile view (`GROUP BY user_id` into SQLite, checkpointed every
//! second) reads `--events` events from a new topic to the end and is stopped; half as many
//! again arrive while it is down; then a second run restores the checkpoint and reads on.
//! Reported: the first run's catch-up from nothing, the restart's catch-up (restore, the
//! replay since the checkpoint and the backlog), and the size and duration of the last
//! checkpoint of the first run.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::harness::failed;
use super::kafka::{create_topic, send_queued};
use crate::error::Result;
use crate::pipeline::Pipeline;
use crate::pipeline::checkpoint::{CheckpointOptions, CheckpointStore};
use crate::pipeline::session::SessionOptions;

/// How often the benchmark's pipeline checkpoints.
const INTERVAL: Duration = Duration::from_secs(1);
/// How long a run may take to catch up before the benchmark gives up.
const GIVE_UP: Duration = Duration::from_secs(600);

/// Runs the benchmark over `events` events of `users` users.
pub(super) async fn restart_to_caught_up(
    servers: &str,
    events: u64,
    users: u64,
    dir: &Path,
) -> Result<()> {
    let topic = format!("profusion-restart-{}", std::process::id());
    create_topic(servers, &topic, 1).await?;
    let db = dir.join("restart.db");
    let checkpoints = dir.join("restart-checkpoints");
    let pipeline = format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
           WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{servers}',
                 'scan.startup.mode' = 'earliest', 'properties.fetch.wait.max.ms' = '10');
         CREATE MATERIALIZED VIEW restart_profiles PRIMARY KEY (user_id)
           WITH (path = '{}') AS
         SELECT user_id, count(*) AS events, sum(amount) AS spend, max(ts) AS last_seen
         FROM events GROUP BY user_id;",
        db.display()
    );
    let options = CheckpointOptions {
        location: checkpoints.display().to_string(),
        interval: INTERVAL,
        writer: None,
    };

    produce(servers, &topic, 0, events, users).await?;
    let first = run_until(&pipeline, &options, &db, events, INTERVAL * 3).await?;
    let store = CheckpointStore::open(&options.location)?;
    let (bytes, took_ms) = match store.list().await?.into_iter().rev().find_map(|c| {
        let bytes = c.bytes;
        c.manifest.map(|m| (bytes, m.duration_ms))
    }) {
        Some(last) => last,
        None => {
            return Err(failed(
                "restart benchmark",
                "the first run took no checkpoint",
            ));
        }
    };
    let backlog = events / 2;
    produce(servers, &topic, events, backlog, users).await?;
    let second = run_until(&pipeline, &options, &db, events + backlog, Duration::ZERO).await?;
    println!(
        "{:<16} {:>12} {:>10.3} {:>12}  first run: {events} events in {:.3}s; last checkpoint {bytes} bytes in {took_ms} ms",
        "restart",
        backlog,
        second.as_secs_f64(),
        (backlog as f64 / second.as_secs_f64()).round(),
        first.as_secs_f64(),
    );
    Ok(())
}

/// Runs the pipeline (restoring its latest checkpoint) until its view has counted `total`
/// events, then `linger` longer (for a checkpoint to cover them), then stops it. The time
/// from loading the pipeline to having counted them.
async fn run_until(
    pipeline: &str,
    options: &CheckpointOptions,
    db: &Path,
    total: u64,
    linger: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let loaded = Pipeline::load(pipeline, &SessionOptions::default()).await?;
    let engine = loaded.engine().clone();
    let running = tokio::spawn(loaded.run_with(Some(options.clone())));
    let deadline = started + GIVE_UP;
    let caught_up = loop {
        if counted(db) >= total {
            break started.elapsed();
        }
        if Instant::now() > deadline || running.is_finished() {
            engine.shared().stop.stop();
            running.await.map_err(|e| failed("restart pipeline", e))??;
            return Err(failed(
                "restart benchmark",
                format!("the view counted {} of {total} events", counted(db)),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(linger).await;
    engine.shared().stop.stop();
    running.await.map_err(|e| failed("restart pipeline", e))??;
    Ok(caught_up)
}

/// The events the view has counted so far.
fn counted(db: &Path) -> u64 {
    rusqlite::Connection::open(db)
        .and_then(|c| {
            c.query_row(
                "SELECT coalesce(sum(events), 0) FROM restart_profiles",
                [],
                |row| row.get::<_, i64>(0),
            )
        })
        .map_or(0, |n| n as u64)
}

/// Produces events `first..first + count`, one record per batch: a restart resumes from an
/// offset that may fall anywhere, and tansu 0.6 skips the rest of a record batch when a
/// fetch starts inside it.
async fn produce(servers: &str, topic: &str, first: u64, count: u64, users: u64) -> Result<()> {
    let (servers, topic) = (servers.to_string(), topic.to_string());
    let produce = move || -> Result<()> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .map_err(|e| failed("creating the restart producer", e))?;
        for i in first..first + count {
            let value = format!(
                r#"{{"user_id":"u{}","amount":{}.5,"ts":"2026-01-01T00:00:00"}}"#,
                i % users.max(1),
                i % 100
            );
            send_queued(&producer, BaseRecord::to(&topic).payload(&value))?;
        }
        producer
            .flush(Duration::from_secs(120))
            .map_err(|e| failed("flushing", e))
    };
    tokio::task::spawn_blocking(produce)
        .await
        .map_err(|e| failed("restart producer", e))?
}
