//! Golden check: over the same seeded `datagen` input written to three files, each window
//! kind's streaming output equals the same aggregation computed by a plain batch
//! DataFusion query, row for row, on 1, 2 and 4 workers (the files spread over the
//! workers, the windows' keys split among them by a hash exchange).

use crate::common;

use common::{batch_over_json, lines, write_generated_json};
use profusion::sql::parse_pipeline;
use profusion::{Engine, SessionOptions};

const COLUMNS: &str =
    "user_id TEXT NOT NULL, event_type TEXT, amount DOUBLE, ts TIMESTAMP NOT NULL";

/// The streaming result of `query` over the file, with a watermark delay that covers the
/// input's disorder (so no row is late).
async fn streaming(path: &str, query: &str, workers: usize) -> Vec<String> {
    let engine = Engine::new(&SessionOptions {
        workers,
        ..SessionOptions::default()
    })
    .unwrap();
    let setup = format!(
        "CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)
         WITH (connector = 'file', path = '{path}', format = 'json'); {query}"
    );
    let mut rows = Vec::new();
    for statement in parse_pipeline(&setup).unwrap() {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            rows = lines(&engine.collect(&job).await.unwrap());
        }
    }
    assert_eq!(engine.shared().metrics.late_rows.get(), 0);
    rows
}

async fn batch(path: &str, query: &str) -> Vec<String> {
    batch_over_json(COLUMNS, path, query).await
}

async fn check(streaming_query: &str, batch_query: &str) {
    let dir = tempfile::tempdir().unwrap();
    for seed in [11, 12, 13] {
        let file = dir.path().join(format!("events-{seed}.jsonl"));
        write_generated_json(COLUMNS, file.to_str().unwrap(), 60000, 300, seed).await;
    }
    let path = format!("{}/", dir.path().display());
    let expected = batch(&path, batch_query).await;
    assert!(
        expected.len() > 100,
        "the input makes many windows: {}",
        expected.len()
    );
    for workers in [1, 2, 4] {
        let actual = streaming(&path, streaming_query, workers).await;
        assert_eq!(actual.len(), expected.len(), "on {workers} workers");
        for (a, e) in actual.iter().zip(&expected) {
            assert_eq!(a, e, "on {workers} workers");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumble_equals_group_by_date_bin() {
    check(
        "SELECT user_id, window_start, window_end, count(*), sum(amount), max(event_type)
         FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
         GROUP BY user_id, window_start, window_end",
        "SELECT user_id, date_bin(INTERVAL '1' MINUTE, ts) AS ws,
                date_bin(INTERVAL '1' MINUTE, ts) + INTERVAL '1' MINUTE, count(*), sum(amount), max(event_type)
         FROM events GROUP BY user_id, ws",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_equals_group_by_every_covering_window() {
    check(
        "SELECT event_type, window_start, window_end, count(*), sum(amount)
         FROM HOP(events, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)
         GROUP BY event_type, window_start, window_end",
        "SELECT event_type, ws, ws + INTERVAL '1' MINUTE, count(*), sum(amount) FROM (
           SELECT event_type, amount,
                  date_bin(INTERVAL '10' SECOND, ts) - back AS ws
           FROM events CROSS JOIN (VALUES (INTERVAL '0' SECOND), (INTERVAL '10' SECOND),
             (INTERVAL '20' SECOND), (INTERVAL '30' SECOND), (INTERVAL '40' SECOND),
             (INTERVAL '50' SECOND)) AS offsets(back)
         ) GROUP BY event_type, ws",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_equals_gaps_between_consecutive_rows() {
    check(
        "SELECT user_id, window_start, window_end, count(*), sum(amount)
         FROM SESSION(events, ts, INTERVAL '20' SECOND)
         GROUP BY user_id, window_start, window_end",
        "SELECT user_id, min(ts), max(ts) + INTERVAL '20' SECOND, count(*), sum(amount) FROM (
           SELECT *, sum(starts) OVER (PARTITION BY user_id ORDER BY ts ROWS UNBOUNDED PRECEDING) AS session
           FROM (
             SELECT *, CASE WHEN ts - lag(ts) OVER (PARTITION BY user_id ORDER BY ts) < INTERVAL '20' SECOND
                            THEN 0 ELSE 1 END AS starts
             FROM events
           )
         ) GROUP BY user_id, session",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulate_equals_group_by_every_step_of_the_period() {
    check(
        "SELECT user_id, window_start, window_end, count(*), sum(amount)
         FROM CUMULATE(events, ts, INTERVAL '20' SECOND, INTERVAL '1' MINUTE)
         GROUP BY user_id, window_start, window_end",
        "SELECT user_id, date_bin(INTERVAL '1' MINUTE, ts) AS ws, we, count(*), sum(amount) FROM (
           SELECT user_id, amount, ts, date_bin(INTERVAL '1' MINUTE, ts) + step AS we
           FROM events CROSS JOIN (VALUES (INTERVAL '20' SECOND), (INTERVAL '40' SECOND),
             (INTERVAL '60' SECOND)) AS steps(step)
         ) WHERE we > ts GROUP BY user_id, ws, we",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascaded_windows_equal_group_by_the_coarser_bin() {
    check(
        "SELECT user_id, window_start, window_end, sum(n), count(*) FROM TUMBLE(
           (SELECT user_id, window_time AS minute, count(*) AS n
            FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
            GROUP BY user_id, window_start, window_end, window_time),
           minute, INTERVAL '5' MINUTE)
         GROUP BY user_id, window_start, window_end",
        "SELECT user_id, date_bin(INTERVAL '5' MINUTE, ts) AS ws,
                date_bin(INTERVAL '5' MINUTE, ts) + INTERVAL '5' MINUTE, count(*),
                count(DISTINCT date_bin(INTERVAL '1' MINUTE, ts))
         FROM events GROUP BY user_id, ws",
    )
    .await;
}

/// A materialized view over a stream (an upsert per key, not a window) ends with the rows
/// of the batch `GROUP BY`, on 1, 2 and 4 workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_equals_group_by_on_every_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    for seed in [11, 12, 13] {
        let file = dir.path().join(format!("events-{seed}.jsonl"));
        write_generated_json(COLUMNS, file.to_str().unwrap(), 20000, 300, seed).await;
    }
    let path = format!("{}/", dir.path().display());
    let expected = batch(
        &path,
        "SELECT user_id, count(*), sum(amount), max(event_type) FROM events GROUP BY user_id",
    )
    .await;
    assert!(expected.len() > 100, "{}", expected.len());
    let stores = tempfile::tempdir().unwrap();
    for workers in [1, 2, 4] {
        let db = stores.path().join(format!("view-{workers}.db"));
        let engine = Engine::new(&SessionOptions {
            workers,
            ..SessionOptions::default()
        })
        .unwrap();
        let pipeline = format!(
            "CREATE TABLE input ({COLUMNS}) WITH (connector = 'file', path = '{path}', format = 'json');
             CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)
               WITH (connector = 'memory', 'scan.mode' = 'replay', splits = 3);
             INSERT INTO events SELECT * FROM input;
             CREATE MATERIALIZED VIEW totals PRIMARY KEY (user_id)
               WITH (connector = 'sqlite', path = '{}') AS
             SELECT user_id, count(*) AS n, sum(amount) AS spend, max(event_type) AS last_type
             FROM events GROUP BY user_id;",
            db.display()
        );
        for statement in parse_pipeline(&pipeline).unwrap() {
            if let Some(job) = engine.submit(statement).await.unwrap() {
                engine.collect(&job).await.unwrap();
            }
        }
        let connection = rusqlite::Connection::open(&db).unwrap();
        let mut statement = connection
            .prepare("SELECT user_id, n, spend, last_type FROM totals")
            .unwrap();
        let mut actual: Vec<String> = statement
            .query_map([], |row| {
                let spend: Option<f64> = row.get(2)?;
                let last: Option<String> = row.get(3)?;
                Ok(format!(
                    "{} | {} | {} | {}",
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    spend.map_or("NULL".into(), |s| format!("{:.6}", s)),
                    last.unwrap_or_else(|| "NULL".into())
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        actual.sort();
        assert_eq!(actual, expected, "on {workers} workers");
    }
}

/// Late rows reach their `'late_data.sink'` once each on two workers, whichever worker
/// their key lands on: a file sink written by one writer holds every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_rows_reach_their_file_sink_once_on_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late.jsonl");
    let engine = Engine::new(&SessionOptions {
        workers: 2,
        ..SessionOptions::default()
    })
    .unwrap();
    let users = ["c", "e", "f", "g", "h", "i", "j", "k"];
    let late_rows: Vec<String> = users
        .iter()
        .map(|u| format!("('{u}', 4.0, '2026-01-01T00:00:30')"))
        .collect();
    let pipeline = format!(
        "CREATE TABLE late_events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
           WITH (connector = 'file', path = '{}', format = 'json');
         CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL,
           WATERMARK FOR ts AS ts)
           WITH (connector = 'memory', 'late_data.sink' = 'late_events');
         INSERT INTO events VALUES ('a', 1.0, '2026-01-01T00:00:10');
         INSERT INTO events VALUES ('b', 2.0, '2026-01-01T00:01:20');
         INSERT INTO events VALUES {};
         SELECT user_id, window_start, count(*) FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
         GROUP BY user_id, window_start, window_end;",
        late.display(),
        late_rows.join(", ")
    );
    let mut windows = Vec::new();
    for statement in parse_pipeline(&pipeline).unwrap() {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            windows = lines(&engine.collect(&job).await.unwrap());
        }
    }
    assert_eq!(windows.len(), 2, "{windows:?}");
    let written = std::fs::read_to_string(&late).unwrap();
    let mut written: Vec<&str> = written.lines().collect();
    written.sort();
    assert_eq!(written.len(), users.len(), "{written:?}");
}
