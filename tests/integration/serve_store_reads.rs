//! Lookups that miss the cache read the store on `serve`'s own connections, at most
//! `--read-concurrency` per view at once: a flood of random keys gets quick answers (404,
//! or 503 beyond the limit) while the pipeline's upserts go on at their pace.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::server::{ADMIN_TOKEN, READ_TOKEN, Server};

/// Upserts the pipeline has committed so far.
async fn upserts(server: &Server) -> u64 {
    let (_, metrics) = server.get("/metrics", Some(ADMIN_TOKEN)).await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("profusion_upsert_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Upserts committed in `span`.
async fn upsert_rate(server: &Server, span: Duration) -> f64 {
    let before = upserts(server).await;
    tokio::time::sleep(span).await;
    (upserts(server).await - before) as f64 / span.as_secs_f64()
}

#[tokio::test]
async fn a_flood_of_cache_misses_gets_quick_answers_and_leaves_the_upserts_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A steady stream the pipeline keeps up with easily: 40 small batches a second.
    let pipeline = "
        CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
          WITH (connector = 'datagen', rows_per_second = '2000', batch_size = '50', users = '500');
        CREATE MATERIALIZED VIEW spend PRIMARY KEY (user_id)
          WITH (connector = 'sqlite', path = 'spend.db') AS
        SELECT user_id, count(*) AS events, sum(amount) AS spend FROM events GROUP BY user_id;";
    let server = Arc::new(Server::start_with(
        dir.path(),
        pipeline,
        &[],
        &["--read-concurrency", "4", "--read-timeout", "2s"],
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while upserts(&server).await == 0 {
        assert!(Instant::now() < deadline, "the pipeline never upserted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let quiet = upsert_rate(&server, Duration::from_secs(3)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (missing, busy, slowest) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(std::sync::Mutex::new(Duration::ZERO)),
    );
    let flood: Vec<_> = (0..64)
        .map(|worker| {
            let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
            let (missing, busy, slowest) = (
                Arc::clone(&missing),
                Arc::clone(&busy),
                Arc::clone(&slowest),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let path = format!("/v1/views/spend/nobody-{worker}-{n}");
                    let (status, text) = server.get(&path, Some(READ_TOKEN)).await;
                    let took = started.elapsed();
                    let mut slowest = slowest.lock().unwrap();
                    *slowest = (*slowest).max(took);
                    match status {
                        404 => missing.fetch_add(1, Ordering::Relaxed),
                        503 if text.contains("--read-concurrency") => {
                            busy.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => panic!("a flooded lookup got {status}: {text}"),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flooded = upsert_rate(&server, Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in flood {
        worker.await.unwrap();
    }
    let (missing, busy) = (
        missing.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
    );
    let slowest = *slowest.lock().unwrap();
    eprintln!(
        "upserts/s: {quiet:.1} quiet, {flooded:.1} flooded; lookups: {missing} read (404), {busy} refused (503); slowest {slowest:?}"
    );
    assert!(missing > 0, "no lookup reached the store");
    assert!(busy > 0, "64 concurrent lookups never met the limit of 4");
    assert!(
        slowest < Duration::from_secs(10),
        "a lookup waited {slowest:?}"
    );
    assert!(
        flooded >= quiet * 0.5,
        "the flood starved the upserts: {quiet:.1}/s quiet, {flooded:.1}/s flooded"
    );
}

#[tokio::test]
async fn a_database_that_never_answers_gets_503_within_the_read_timeout() {
    // A "PostgreSQL" that takes connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let pipeline = format!(
        "CREATE TABLE events (user_id TEXT NOT NULL)
           WITH (connector = 'memory', 'scan.mode' = 'follow', retention = '1000 rows');
         CREATE MATERIALIZED VIEW seen PRIMARY KEY (user_id) WITH (
           connector = 'postgres', url = 'postgres://profusion@{address}/profusion') AS
         SELECT user_id, count(*) AS events FROM events GROUP BY user_id;"
    );
    let server = Server::start_with(
        dir.path(),
        &pipeline,
        &[],
        &["--read-timeout", "1s", "--cache-entries", "0"],
    );
    let started = Instant::now();
    let (status, text) = server.get("/v1/views/seen/u1", Some(READ_TOKEN)).await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("request_id"), "{text}");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    let log = server.stop();
    assert!(
        log.to_lowercase().contains("timeout"),
        "the log does not say the read timed out:\n{log}"
    );
}
