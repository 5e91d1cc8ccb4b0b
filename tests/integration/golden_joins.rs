//! Golden check: over the same seeded `datagen` input, replayed as a stream (its batches
//! interleaved with watermarks, 3 s out of order), each interval join's streaming output
//! equals the same join computed by a plain batch DataFusion query, row for row.

use crate::common;

use common::{batch_over_json, lines, write_generated_json};
use profusion::sql::parse_pipeline;
use profusion::{Engine, SessionOptions};

const COLUMNS: &str =
    "user_id TEXT NOT NULL, event_type TEXT, amount DOUBLE, ts TIMESTAMP NOT NULL";

/// The streaming result of `query`, where `events` replays the file as a stream does.
async fn streaming(path: &str, query: &str) -> Vec<String> {
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
                assert!(plan.contains("IntervalJoinExec"), "{plan}");
            }
            rows = lines(&engine.collect(&job).await.unwrap());
        }
    }
    rows
}

async fn check(query: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let path = path.to_str().unwrap();
    write_generated_json(COLUMNS, path, 30000, 500, 5).await;
    let expected = batch_over_json(COLUMNS, path, query).await;
    let actual = streaming(path, query).await;
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
