//! `profile_latency` (with `--kafka`): how long after an event enters Kafka its profile row
//! can be read. A producer sends events at a steady `--rate` to a new topic; a pipeline in
//! this process keeps a SQLite view of them per user; every 10 ms one of the events belongs
//! to a new probe user, and a reader on its own connection to the SQLite file times when
//! that user's row appears. Reported: p50, p99 and the maximum over every probe.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::harness::failed;
use super::kafka::{create_topic, send_queued};
use crate::Engine;
use crate::error::Result;
use crate::pipeline::session::SessionOptions;
use crate::sql::parse_pipeline;

/// One probe every this often.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// How long a probe's row may take before the benchmark gives up on it.
const GIVE_UP: Duration = Duration::from_secs(30);

/// Runs the benchmark: `events` events at `rate` per second through a view.
pub(super) async fn profile_latency(
    servers: &str,
    rate: u64,
    events: u64,
    dir: &Path,
) -> Result<()> {
    let topic = format!("profusion-latency-{}", std::process::id());
    create_topic(servers, &topic, 1).await?;
    let db = dir.join("latency.db");
    let engine = Engine::new(&SessionOptions::default())?;
    let mut job = None;
    for statement in parse_pipeline(&format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, sent BIGINT, ts TIMESTAMP NOT NULL)
           WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{servers}',
                 'properties.fetch.wait.max.ms' = '5');
         CREATE MATERIALIZED VIEW latency_profiles PRIMARY KEY (user_id)
           WITH (path = '{}') AS
         SELECT user_id, count(*) AS events, max(sent) AS last_sent, max(ts) AS last_seen
         FROM events GROUP BY user_id;",
        db.display()
    ))? {
        job = engine.submit(statement).await?.or(job);
    }
    let job = job.ok_or_else(|| failed("latency benchmark", "no view job"))?;
    let running = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.drain(&job, |_| Ok(())).await })
    };

    // Warm up: the clock starts once the pipeline has read and stored a first event, so the
    // consumer's start is not counted.
    {
        let (servers, topic) = (servers.to_string(), topic.clone());
        let (announce, _) = mpsc::channel();
        tokio::task::spawn_blocking(move || {
            produce_paced(&servers, &topic, 1, 1, "warmup", announce)
        })
        .await
        .map_err(|e| failed("warming up", e))??;
        let deadline = Instant::now() + GIVE_UP;
        while !row_exists(&db, "warmup-1") {
            if Instant::now() > deadline {
                return Err(failed("warming up", "the pipeline stored nothing"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let (probes, pending) = mpsc::channel::<(String, Instant)>();
    let producer = {
        let (servers, topic) = (servers.to_string(), topic.clone());
        tokio::task::spawn_blocking(move || {
            produce_paced(&servers, &topic, rate, events, "probe", probes)
        })
    };
    let reader = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || time_probes(&db, pending))
    };
    // Awaited, not joined: the pipeline runs on this same runtime meanwhile.
    let produced = producer
        .await
        .map_err(|e| failed("latency producer", e))??;
    let mut latencies = reader.await.map_err(|e| failed("latency reader", e))??;
    engine.shared().stop.stop();
    running.await.map_err(|e| failed("latency pipeline", e))??;

    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    if latencies.is_empty() {
        return Err(failed("latency benchmark", "no probe was timed"));
    }
    println!(
        "{:<16} {:>12} {:>10} {:>12} {:>12}  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} probes (Kafka -> view -> SQLite row readable)",
        "profile_latency",
        produced.events,
        produced.elapsed.as_secs_f64(),
        (produced.events as f64 / produced.elapsed.as_secs_f64()).round(),
        "",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
        latencies.len()
    );
    Ok(())
}

struct Produced {
    events: u64,
    elapsed: Duration,
}

/// Sends `events` events at `rate` per second, every [`PROBE_EVERY`] one for a new probe
/// user (`prefix-1`, `prefix-2`, …), announced on `probes` with the time it was handed to the client.
fn produce_paced(
    servers: &str,
    topic: &str,
    rate: u64,
    events: u64,
    prefix: &str,
    probes: mpsc::Sender<(String, Instant)>,
) -> Result<Produced> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| failed("creating the latency producer", e))?;
    let started = Instant::now();
    let mut next_probe = started;
    let mut probe = 0u64;
    for i in 0..events {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        let now = Instant::now();
        if due > now {
            producer.poll(Duration::ZERO);
            std::thread::sleep(due - now);
        }
        let now = Instant::now();
        let user = if now >= next_probe {
            next_probe += PROBE_EVERY;
            probe += 1;
            format!("{prefix}-{probe}")
        } else {
            format!("u{}", i % 10_000)
        };
        let sent = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let value = format!(r#"{{"user_id":"{user}","sent":{sent},"ts":"2026-01-01T00:00:00"}}"#);
        send_queued(&producer, BaseRecord::to(topic).payload(&value))?;
        if user.starts_with(prefix) {
            let _ = probes.send((user, Instant::now()));
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| failed("flushing", e))?;
    Ok(Produced {
        events,
        elapsed: started.elapsed(),
    })
}

/// True once `user` has a row in the view's table.
fn row_exists(db: &Path, user: &str) -> bool {
    db.exists()
        && rusqlite::Connection::open(db).is_ok_and(|c| {
            c.query_row(
                "SELECT 1 FROM latency_profiles WHERE user_id = ?1",
                [user],
                |_| Ok(()),
            )
            .is_ok()
        })
}

/// Times each probe, in order, from being sent to its row being readable.
fn time_probes(db: &Path, pending: mpsc::Receiver<(String, Instant)>) -> Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    let mut connection = None;
    for (user, sent) in pending {
        loop {
            if connection.is_none() && db.exists() {
                connection = rusqlite::Connection::open(db).ok();
            }
            let found = connection.as_ref().is_some_and(|c| {
                c.query_row(
                    "SELECT 1 FROM latency_profiles WHERE user_id = ?1",
                    [&user],
                    |_| Ok(()),
                )
                .is_ok()
            });
            if found {
                latencies.push(sent.elapsed());
                break;
            }
            if sent.elapsed() > GIVE_UP {
                return Err(failed("latency reader", format!("{user} never appeared")));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    Ok(latencies)
}
