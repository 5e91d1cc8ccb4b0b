//! The `file` connector on object storage: JSON lines and Parquet written to and read back
//! from an `s3://` URL, against a local S3 server on 127.0.0.1 that `scripts/test` starts
//! (it sets `PROFUSION_TEST_S3_BUCKET` and the `AWS_*` variables that point at it).

use crate::common;

use common::run_pipeline;
use profusion::sql::parse_pipeline;
use profusion::{Engine, SessionOptions};

const COLUMNS: &str = "user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL";

#[tokio::test]
async fn files_round_trip_through_s3() {
    let Ok(bucket) = std::env::var("PROFUSION_TEST_S3_BUCKET") else {
        eprintln!(
            "skipped: PROFUSION_TEST_S3_BUCKET is not set; scripts/test starts an S3 server and sets it"
        );
        return;
    };
    for format in ["json", "parquet"] {
        let url = format!("s3://{bucket}/runs/events.{format}");
        run_pipeline(&format!(
            "CREATE TABLE generated ({COLUMNS}) WITH (connector = 'datagen', count = 5000, seed = 8);
             CREATE TABLE out ({COLUMNS}) WITH (connector = 'file', path = '{url}', format = '{format}');
             INSERT INTO out SELECT * FROM generated;"
        ))
        .await;

        let engine = Engine::new(&SessionOptions::default()).unwrap();
        let text = format!(
            "CREATE TABLE back ({COLUMNS}) WITH (connector = 'file', path = '{url}', format = '{format}');
             SELECT count(*), count(DISTINCT user_id), round(sum(amount), 2) FROM back;"
        );
        let mut rows = String::new();
        for statement in parse_pipeline(&text).unwrap() {
            if let Some(job) = engine.submit(statement).await.unwrap() {
                let batches = engine.collect(&job).await.unwrap();
                rows = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string();
            }
        }
        assert!(rows.contains("| 5000 "), "{format}: {rows}");
    }
}
