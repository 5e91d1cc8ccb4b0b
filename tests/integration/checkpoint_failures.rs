//! Checkpoints that cannot be taken are seen, not only printed: a failing checkpoint
//! directory counts in `profusion_checkpoint_failures_total` while
//! `profusion_checkpoint_last_success_seconds` stays at the last good one; and a
//! continuous query into a file sink, which could never complete a checkpoint, is refused
//! before it runs.

use crate::common;

use std::time::{Duration, Instant};

use common::server::{ADMIN_TOKEN, Server};

fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[tokio::test]
async fn a_checkpoint_directory_that_fails_shows_in_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let pipeline = "
        CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
          WITH (connector = 'datagen', rows_per_second = '1000', batch_size = '50', users = '50');
        CREATE MATERIALIZED VIEW spend PRIMARY KEY (user_id)
          WITH (connector = 'sqlite', path = 'spend.db') AS
        SELECT user_id, count(*) AS events FROM events GROUP BY user_id;";
    let server = Server::start_with(
        dir.path(),
        pipeline,
        &[],
        &[
            "--checkpoint-dir",
            checkpoints.to_str().unwrap(),
            "--checkpoint-interval",
            "200ms",
        ],
    );
    let scrape = || async { server.get("/metrics", Some(ADMIN_TOKEN)).await.1 };
    let deadline = Instant::now() + Duration::from_secs(30);
    let last_good = loop {
        let metrics = scrape().await;
        let at = metric(&metrics, "profusion_checkpoint_last_success_seconds");
        if at > 0.0 {
            assert_eq!(metric(&metrics, "profusion_checkpoint_failures_total"), 0.0);
            break at;
        }
        assert!(Instant::now() < deadline, "no checkpoint completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - last_good).abs() < 120.0,
        "{last_good} is not a time near {now}"
    );

    // The directory becomes a file: every checkpoint from now on fails.
    std::fs::remove_dir_all(&checkpoints).unwrap();
    std::fs::write(&checkpoints, "not a directory").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (failures, last) = loop {
        let metrics = scrape().await;
        let failures = metric(&metrics, "profusion_checkpoint_failures_total");
        if failures >= 2.0 {
            break (
                failures,
                metric(&metrics, "profusion_checkpoint_last_success_seconds"),
            );
        }
        assert!(
            Instant::now() < deadline,
            "failed checkpoints were not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The last success may be one that finished as the directory went away, never later.
    let settled = scrape().await;
    assert_eq!(
        metric(&settled, "profusion_checkpoint_last_success_seconds"),
        last,
        "a checkpoint succeeded after {failures} failures"
    );
    assert!(
        server
            .stop()
            .contains("the previous checkpoint stays the latest")
    );
}

#[test]
fn a_continuous_query_into_a_file_sink_is_refused_with_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.sql");
    std::fs::write(
        &file,
        "CREATE TABLE events (user_id TEXT NOT NULL) WITH (connector = 'datagen', rows_per_second = 10);
         CREATE TABLE out (user_id TEXT) WITH (connector = 'file', path = 'out.jsonl', format = 'json');
         INSERT INTO out SELECT user_id FROM events;",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_profusion"))
        .arg("run")
        .arg(&file)
        .arg("--checkpoint-dir")
        .arg(dir.path().join("checkpoints"))
        .arg("--quiet")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("cannot be checkpointed"),
        "{stderr}"
    );
}
