//! Profile views and keyed tables in PostgreSQL (which `scripts/test` installs, starts on
//! 127.0.0.1 with its own data folder, and names in `PROFUSION_TEST_POSTGRES`): the same
//! view as in `materialized_view.slt`, stored in PostgreSQL, reads back with every type
//! intact; a replay changes nothing; a batch holding one key twice keeps the last row.

use crate::common;

use common::{kafka::unique, lines};
use profusion::sql::parse_pipeline;
use profusion::{Engine, SessionOptions, rows_written};

fn test_database() -> Option<String> {
    let url = std::env::var("PROFUSION_TEST_POSTGRES").ok();
    if url.is_none() {
        eprintln!(
            "skipped: PROFUSION_TEST_POSTGRES is not set; scripts/test starts PostgreSQL and sets it"
        );
    }
    url
}

/// Runs each statement of `text` in `engine`, every job to its end; returns the rows of
/// the last query and the rows each job wrote.
async fn run(engine: &Engine, text: &str) -> (Vec<String>, Vec<u64>) {
    let mut rows = Vec::new();
    let mut written = Vec::new();
    for statement in parse_pipeline(text).unwrap() {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            let batches = engine.collect(&job).await.unwrap();
            match job.kind {
                profusion::JobKind::Query => rows = lines(&batches),
                _ => written.push(rows_written(&batches)),
            }
        }
    }
    (rows, written)
}

const EVENTS: &str = "
CREATE TABLE events (
  user_id TEXT NOT NULL, event_type TEXT NOT NULL, page TEXT, amount DOUBLE, ok BOOLEAN,
  ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'memory', 'scan.mode' = 'replay');
INSERT INTO events VALUES
  ('alice', 'page_view', '/home',     NULL, true,  '2026-01-01T00:00:05.123456'),
  ('bob',   'page_view', '/pricing',  NULL, false, '2026-01-01T00:00:07'),
  ('alice', 'purchase',  '/checkout', 10.5, true,  '2026-01-01T00:00:30');
INSERT INTO events VALUES
  ('carol', 'chat_message', NULL,     NULL, NULL,  '2026-01-01T00:01:00'),
  ('bob',   'purchase',  '/checkout', 7.25, true,  '2026-01-01T00:01:10');
";

fn profile_view(name: &str, url: &str, table: &str) -> String {
    format!(
        "CREATE MATERIALIZED VIEW {name} PRIMARY KEY (user_id)
         WITH (connector = 'postgres', url = '{url}', table = '{table}') AS
         SELECT user_id, count(*) AS events, sum(amount) AS spend, max(ts) AS last_seen,
                last_value(event_type ORDER BY ts) AS last_event, bool_and(ok) AS all_ok,
                array_agg(page ORDER BY ts) AS pages
         FROM events GROUP BY user_id;"
    )
}

#[tokio::test]
async fn a_view_in_postgres_reads_back_and_ignores_replays() {
    let Some(url) = test_database() else { return };
    let table = unique("profiles");
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    let (_, written) = run(&engine, EVENTS).await;
    assert_eq!(written, [3, 2]);

    let (_, written) = run(&engine, &profile_view("profiles", &url, &table)).await;
    assert_eq!(written, [4], "2 keys changed by each batch");
    let (rows, _) = run(&engine, "SELECT * FROM profiles;").await;
    assert_eq!(
        rows,
        [
            "alice | 2 | 10.500000 | 2026-01-01T00:00:30 | purchase | true | [/home, /checkout]",
            "bob | 2 | 7.250000 | 2026-01-01T00:01:10 | purchase | false | [/pricing, /checkout]",
            "carol | 1 | NULL | 2026-01-01T00:01:00 | chat_message | NULL | [NULL]",
        ]
    );

    // The same input again, from a second view on the same table: every upsert is stale.
    let (_, written) = run(&engine, &profile_view("again", &url, &table)).await;
    assert_eq!(written, [0]);
    assert_eq!(engine.shared().metrics.stale_upserts.get(), 4);
}

#[tokio::test]
async fn a_view_over_windows_keeps_each_users_latest_window() {
    let Some(url) = test_database() else { return };
    let table = unique("latest_minute");
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    run(&engine, EVENTS).await;
    let (_, written) = run(
        &engine,
        &format!(
            "CREATE MATERIALIZED VIEW latest PRIMARY KEY (user_id)
             WITH (connector = 'postgres', url = '{url}', table = '{table}') AS
             SELECT user_id, window_start, count(*) AS events
             FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY user_id, window_start, window_end;"
        ),
    )
    .await;
    assert_eq!(written, [4]);
    let (rows, _) = run(&engine, "SELECT * FROM latest;").await;
    assert_eq!(
        rows,
        [
            "alice | 2026-01-01T00:00:00 | 2",
            "bob | 2026-01-01T00:01:00 | 1",
            "carol | 2026-01-01T00:01:00 | 1",
        ]
    );
}

#[tokio::test]
async fn a_keyed_postgres_table_takes_inserts_and_refuses_other_columns() {
    let Some(url) = test_database() else { return };
    let table = unique("totals");
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    run(&engine, EVENTS).await;
    let (_, written) = run(
        &engine,
        &format!(
            "CREATE TABLE totals (user_id TEXT NOT NULL, events BIGINT, PRIMARY KEY (user_id))
             WITH (connector = 'postgres', url = '{url}', table = '{table}');
             INSERT INTO totals SELECT user_id, count(*) FROM events GROUP BY user_id;"
        ),
    )
    .await;
    assert_eq!(written, [4]);
    let (rows, _) = run(&engine, "SELECT * FROM totals;").await;
    assert_eq!(rows, ["alice | 2", "bob | 2", "carol | 1"]);

    // One statement cannot change a row twice: of one key twice in a batch, the last stays.
    let (_, written) = run(
        &engine,
        "INSERT INTO totals VALUES ('dave', 1), ('erin', 5), ('dave', 2);",
    )
    .await;
    assert_eq!(written, [2]);
    let (rows, _) = run(
        &engine,
        "SELECT * FROM totals WHERE user_id IN ('dave', 'erin');",
    )
    .await;
    assert_eq!(rows, ["dave | 2", "erin | 5"]);

    // Binary values come back byte for byte.
    let blobs = unique("blobs");
    let (_, written) = run(
        &engine,
        &format!(
            "CREATE TABLE blobs (k TEXT NOT NULL, b BYTEA, PRIMARY KEY (k))
             WITH (connector = 'postgres', url = '{url}', table = '{blobs}');
             INSERT INTO blobs VALUES ('hello', X'68656c6c6f'), ('none', NULL);"
        ),
    )
    .await;
    assert_eq!(written, [2]);
    let (rows, _) = run(&engine, "SELECT k, b FROM blobs;").await;
    assert_eq!(rows, ["hello | 68656c6c6f", "none | NULL"]);

    let statements = parse_pipeline(&format!(
        "CREATE TABLE clash (user_id TEXT NOT NULL, n DOUBLE, PRIMARY KEY (user_id))
         WITH (connector = 'postgres', url = '{url}', table = '{table}');
         INSERT INTO clash VALUES ('x', 1.0);"
    ))
    .unwrap();
    let mut error = None;
    for statement in statements {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            error = engine.collect(&job).await.err();
        }
    }
    let error = error
        .expect("a table with other columns is refused")
        .to_string();
    assert!(
        error.contains("already has the columns (user_id, events), not (user_id, n)"),
        "{error}"
    );
}
