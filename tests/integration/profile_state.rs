//! The state of an unbounded `GROUP BY` is bounded: it lives in DataFusion's memory pool
//! (outgrowing the limit is an error that says what to do, not an abort), and
//! `'state.ttl'` forgets keys that have been idle, whose rows then start over.

use std::time::Duration;

use crate::common;

use common::{eventually, try_run_pipeline};
use profusion::sql::parse_pipeline;
use profusion::{Engine, SessionOptions};

#[tokio::test]
async fn outgrowing_the_memory_limit_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = try_run_pipeline(
        &format!(
            "CREATE TABLE generated (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
               WITH (connector = 'datagen', count = 200000, users = 200000, seed = 3);
             CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
               WITH (connector = 'memory', 'scan.mode' = 'replay');
             INSERT INTO events SELECT * FROM generated;
             CREATE MATERIALIZED VIEW totals PRIMARY KEY (user_id)
               WITH (path = '{}/p.db') AS
             SELECT user_id, count(*) AS n, sum(amount) AS spend FROM events GROUP BY user_id;",
            dir.path().display()
        ),
        &SessionOptions {
            memory_limit: Some(4 << 20),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        error.contains("the state of an unbounded GROUP BY needs")
            && error.contains("over the memory limit")
            && error.contains("'state.ttl'"),
        "{error}"
    );
}

/// The row of `user` in the SQLite table `table`: (n, version), once present.
fn stored(path: &std::path::Path, table: &str, user: &str) -> Option<(i64, i64)> {
    let connection = rusqlite::Connection::open(path).ok()?;
    connection
        .query_row(
            &format!("SELECT n, _version FROM {table} WHERE user_id = ?1"),
            [user],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .ok()
}

async fn wait_for(path: &std::path::Path, user: &str, expected_n: i64) -> (i64, i64) {
    eventually(
        &format!("{user} reaching n = {expected_n}"),
        Duration::from_secs(20),
        || match stored(path, "recent", user) {
            Some(row) if row.0 == expected_n => Ok(row),
            other => Err(format!("last: {other:?}")),
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keys_expire_and_start_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    let mut view = None;
    for statement in parse_pipeline(&format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL)
           WITH (connector = 'memory', 'scan.mode' = 'follow');
         CREATE MATERIALIZED VIEW recent PRIMARY KEY (user_id)
           WITH (path = '{}', 'state.ttl' = '200ms') AS
         SELECT user_id, count(*) AS n FROM events GROUP BY user_id;",
        path.display()
    ))
    .unwrap()
    {
        view = engine.submit(statement).await.unwrap().or(view);
    }
    let view = view.expect("the view's job");
    let running = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.drain(&view, |_| Ok(())).await })
    };
    let insert = |values: &'static str| {
        let engine = engine.clone();
        async move {
            let frame = engine
                .context()
                .sql(&format!("INSERT INTO events VALUES {values}"))
                .await
                .unwrap();
            frame.collect().await.unwrap();
        }
    };

    insert("('alice', '2026-01-01T00:00:01'), ('alice', '2026-01-01T00:00:02')").await;
    let (_, first_version) = wait_for(&path, "alice", 2).await;
    // Idle for longer than the TTL, then another key's row sweeps alice out of the state.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    insert("('bob', '2026-01-01T00:00:03')").await;
    wait_for(&path, "bob", 1).await;
    insert("('alice', '2026-01-01T00:00:04')").await;
    let (_, restarted_version) = wait_for(&path, "alice", 1).await;
    assert!(
        restarted_version > first_version,
        "a restarted key's versions are above its earlier ones: {restarted_version} > {first_version}"
    );

    engine.shared().stop.stop();
    running.await.unwrap().unwrap();
}
