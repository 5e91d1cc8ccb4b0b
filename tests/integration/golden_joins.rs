//! Golden check: over the same seeded `datagen` input, replayed as a stream (its batches
//! interleaved with watermarks, 3 s out of order), each interval and temporal join's
//! streaming output equals the same join computed by a plain batch DataFusion query, row
//! for row.

use crate::common;

use common::{batch_over_json, lines, write_generated_json};
use profusion::sql::parse_pipeline;
use profusion::{Engine, SessionOptions};

const COLUMNS: &str =
    "user_id TEXT NOT NULL, event_type TEXT, amount DOUBLE, ts TIMESTAMP NOT NULL";

/// The streaming result of `query`, where `events` replays the file as a stream does; its
/// join runs as `operator`.
async fn streaming(path: &str, query: &str, operator: &str) -> Vec<String> {
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    let setup = format!(
        "CREATE TABLE input ({COLUMNS}) WITH (connector = 'file', path = '{path}', format = 'json');
         CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)
         WITH (connector = 'memory', 'scan.mode' = 'replay');
         INSERT INTO events SELECT * FROM input; {query}"
    );
    let mut rows = Vec::new();
    for statement in parse_pipeline(&setup).unwrap() {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            if job.sql.contains("JOIN") {
                let plan = datafusion::physical_plan::displayable(job.plan.as_ref())
                    .indent(false)
                    .to_string();
                assert!(plan.contains(operator), "{plan}");
            }
            rows = lines(&engine.collect(&job).await.unwrap());
        }
    }
    rows
}

async fn check(query: &str) {
    check_against(query, query, "IntervalJoinExec").await;
}

/// Checks that the streaming `query` equals the batch query `batch`.
async fn check_against(query: &str, batch: &str, operator: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let path = path.to_str().unwrap();
    write_generated_json(COLUMNS, path, 30000, 500, 5).await;
    let expected = batch_over_json(COLUMNS, path, batch).await;
    let actual = streaming(path, query, operator).await;
    assert!(
        expected.len() > 1000,
        "many joined rows: {}",
        expected.len()
    );
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(&expected) {
        assert_eq!(a, e);
    }
}

#[tokio::test]
async fn inner_interval_join_equals_the_batch_join() {
    check(
        "SELECT a.user_id, a.ts, a.event_type, b.ts, b.amount
         FROM events a JOIN events b
           ON a.user_id = b.user_id AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '3' SECOND",
    )
    .await;
}

#[tokio::test]
async fn left_interval_join_equals_the_batch_join() {
    check(
        "SELECT a.user_id, a.ts, b.ts
         FROM events a LEFT JOIN events b
           ON a.user_id = b.user_id AND b.event_type = 'purchase'
          AND b.ts > a.ts - INTERVAL '2' SECOND AND b.ts < a.ts + INTERVAL '5' SECOND",
    )
    .await;
}

#[tokio::test]
async fn full_interval_join_equals_the_batch_join() {
    check(
        "SELECT a.user_id, a.ts, b.user_id, b.ts
         FROM (SELECT * FROM events WHERE event_type = 'click') a
         FULL JOIN (SELECT * FROM events WHERE event_type = 'purchase') b
           ON a.user_id = b.user_id AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '10' SECOND",
    )
    .await;
}

/// Each event with the time of its user's latest event at least a second before it: the
/// stream's `AS OF` time is a second before its event time.
const TEMPORAL: &str = "SELECT a.user_id, a.ts, a.event_type, v.ts
     FROM (SELECT user_id, ts, event_type, ts - INTERVAL '1' SECOND AS before FROM events) a
     {JOIN} events FOR SYSTEM_TIME AS OF a.before AS v ON v.user_id = a.user_id";

/// The same as a batch query: the latest time at least a second before, per user.
const LATEST_BEFORE: &str = "SELECT user_id, ts, event_type, max(ts) OVER (PARTITION BY user_id
       ORDER BY ts RANGE BETWEEN UNBOUNDED PRECEDING AND INTERVAL '1' SECOND PRECEDING) AS version
     FROM events";

#[tokio::test]
async fn inner_temporal_join_equals_the_batch_query() {
    check_against(
        &TEMPORAL.replace("{JOIN}", "JOIN"),
        &format!("SELECT * FROM ({LATEST_BEFORE}) WHERE version IS NOT NULL"),
        "TemporalJoinExec",
    )
    .await;
}

#[tokio::test]
async fn left_temporal_join_equals_the_batch_query() {
    check_against(
        &TEMPORAL.replace("{JOIN}", "LEFT JOIN"),
        LATEST_BEFORE,
        "TemporalJoinExec",
    )
    .await;
}
