//! A materialized view over other views is kept up to date as they change: it runs again
//! whenever one of them has applied rows (no sooner than `'refresh.min_interval'` after
//! its previous run), its rows replace the previous run's and keys it no longer returns
//! are deleted. A chain of views follows its first link; a pipeline whose inputs end ends.

use std::path::Path;
use std::time::Duration;

use crate::common;

use common::run_pipeline;
use profusion::{Pipeline, SessionOptions};

/// The rows of `query` in the SQLite file at `path`, as text, or nothing while the table
/// does not exist yet.
fn stored(path: &Path, query: &str) -> Vec<String> {
    let Ok(connection) = rusqlite::Connection::open(path) else {
        return Vec::new();
    };
    let Ok(mut statement) = connection.prepare(query) else {
        return Vec::new();
    };
    let columns = statement.column_count();
    let rows = statement.query_map([], |row| {
        (0..columns)
            .map(|i| {
                Ok(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                    rusqlite::types::ValueRef::Null => "NULL".into(),
                    other => format!("{other:?}"),
                })
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map(|cells| cells.join(" "))
    });
    let mut rows: Vec<String> = match rows {
        Ok(rows) => rows.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    };
    rows.sort();
    rows
}

/// Waits up to 30 s for `query` to return `expected`; a pipeline that ended meanwhile
/// fails the wait at once, with what it ended with.
async fn wait_for(
    path: &Path,
    query: &str,
    expected: &[&str],
    running: &mut tokio::task::JoinHandle<profusion::Result<profusion::RunSummary>>,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = stored(path, query);
        if rows == expected {
            return;
        }
        if running.is_finished() {
            panic!(
                "`{query}` returning {expected:?} never happened: the pipeline ended with {:?}; last: {rows:?}",
                running.await
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{query}` returning {expected:?} never happened; last: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_views_follows_the_stream_it_starts_from() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profiles.db");
    let pipeline = Pipeline::load(
        &format!(
            "CREATE TABLE events (user_id TEXT NOT NULL, plan TEXT NOT NULL, ts TIMESTAMP NOT NULL)
               WITH (connector = 'memory', 'scan.mode' = 'follow');
             CREATE MATERIALIZED VIEW user_plan PRIMARY KEY (user_id) WITH (path = '{db}') AS
             SELECT user_id, last_value(plan ORDER BY ts) AS plan, count(*) AS events
             FROM events GROUP BY user_id;
             CREATE MATERIALIZED VIEW plan_users PRIMARY KEY (plan)
               WITH (path = '{db}', 'refresh.min_interval' = '50ms') AS
             SELECT plan, count(*) AS users, sum(events) AS events FROM user_plan GROUP BY plan;
             CREATE MATERIALIZED VIEW popular_plans PRIMARY KEY (plan)
               WITH (path = '{db}', 'refresh.min_interval' = '50ms') AS
             SELECT plan, users FROM plan_users WHERE users >= 2;",
            db = db.display()
        ),
        &SessionOptions::default(),
    )
    .await
    .unwrap();
    let engine = pipeline.engine().clone();
    let mut running = tokio::spawn(pipeline.run());
    let insert = |values: &str| {
        let engine = engine.clone();
        let sql = format!("INSERT INTO events VALUES {values}");
        async move {
            engine
                .context()
                .sql(&sql)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
        }
    };
    let plans = "SELECT plan, users, events FROM plan_users";
    let popular = "SELECT plan, users FROM popular_plans";

    insert(
        "('alice', 'free', '2026-01-01T00:00:01'), ('bob', 'free', '2026-01-01T00:00:02'),
         ('carol', 'pro', '2026-01-01T00:00:03')",
    )
    .await;
    wait_for(&db, plans, &["free 2 2", "pro 1 1"], &mut running).await;
    wait_for(&db, popular, &["free 2"], &mut running).await;

    // alice upgrades and bob moves to team: free has no users left, so its row goes.
    insert(
        "('alice', 'pro', '2026-01-01T00:01:00'), ('bob', 'team', '2026-01-01T00:01:01'),
         ('carol', 'pro', '2026-01-01T00:01:02')",
    )
    .await;
    wait_for(&db, plans, &["pro 2 4", "team 1 2"], &mut running).await;
    wait_for(&db, popular, &["pro 2"], &mut running).await;

    engine.shared().stop.stop();
    let summary = running.await.unwrap().unwrap();
    assert!(summary.stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_over_a_view_whose_input_ends_ends_with_it_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profiles.db");
    run_pipeline(&format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, event_type TEXT NOT NULL, amount DOUBLE,
           ts TIMESTAMP NOT NULL)
           WITH (connector = 'datagen', count = 30000, users = 400, seed = 11);
         CREATE MATERIALIZED VIEW user_profile PRIMARY KEY (user_id) WITH (path = '{db}') AS
         SELECT user_id, last_value(event_type ORDER BY ts) AS last_event, count(*) AS events
         FROM events GROUP BY user_id;
         CREATE MATERIALIZED VIEW by_last_event PRIMARY KEY (last_event)
           WITH (path = '{db}', 'refresh.min_interval' = '10ms') AS
         SELECT last_event, count(*) AS users, sum(events) AS events
         FROM user_profile GROUP BY last_event;",
        db = db.display()
    ))
    .await;
    // What the downstream view holds is what SQLite computes from the upstream store.
    let expected = stored(
        &db,
        "SELECT last_event, count(*), sum(events) FROM user_profile GROUP BY last_event",
    );
    let held = stored(&db, "SELECT last_event, users, events FROM by_last_event");
    assert!(!expected.is_empty());
    assert_eq!(held, expected);
    assert_eq!(
        stored(&db, "SELECT sum(events) FROM by_last_event"),
        ["30000"]
    );
}
