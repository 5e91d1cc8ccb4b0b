//! A split that goes quiet holds the watermark back until `'watermark.idle_timeout'`;
//! after that it no longer does, and its rows that arrive later than the watermark are late.
//!
//! The source here has two splits with controlled timing: the `quiet` split sends one row,
//! says nothing for 600 ms, then sends a row from its past; the `busy` split sends a row
//! every 20 ms, ten seconds of event time apart. On two workers each split is read by a
//! worker of its own, and the same holds of the worker whose only split is idle.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::col;
use futures::StreamExt;
use profusion::connector::{SourceDefinition, StreamTable};
use profusion::sql::parse_pipeline;
use profusion::stream::{LatenessOptions, ScanPartition, Source, SplitStream, WatermarkSpec};
use profusion::{Engine, SessionOptions};

const START: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00
const SECOND: i64 = 1_000_000_000;

#[derive(Debug)]
struct TimedSplits {
    schema: SchemaRef,
}

fn batch(schema: &SchemaRef, split: &str, seconds: i64) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        Arc::clone(schema),
        vec![
            Arc::new(StringArray::from(vec![split])),
            Arc::new(TimestampNanosecondArray::from(vec![
                START + seconds * SECOND,
            ])),
        ],
    )?)
}

#[async_trait]
impl Source for TimedSplits {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "timed splits".into()
    }

    async fn open(
        &self,
        _context: Arc<TaskContext>,
        _event_time: Option<&WatermarkSpec>,
        scan: &ScanPartition,
    ) -> Result<Vec<SplitStream>> {
        let schema = Arc::clone(&self.schema);
        let quiet = futures::stream::iter([(0u64, 5i64), (600, 25)])
            .then(move |(delay, seconds)| {
                let schema = Arc::clone(&schema);
                async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    batch(&schema, "quiet", seconds)
                }
            })
            .boxed();
        let schema = Arc::clone(&self.schema);
        let busy = futures::stream::iter(0..50i64)
            .then(move |i| {
                let schema = Arc::clone(&schema);
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    batch(&schema, "busy", 10 + i * 10)
                }
            })
            .boxed();
        Ok([quiet, busy]
            .into_iter()
            .enumerate()
            .filter(|(split, _)| scan.reads(*split))
            .map(|(_, stream)| stream)
            .collect())
    }

    fn split_count(&self) -> Option<usize> {
        Some(2)
    }
}

/// Counts rows per window over the timed source; returns (rows in the first minute, late rows).
async fn first_minute(idle_timeout: Option<Duration>, workers: usize) -> (String, u64) {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("split", DataType::Utf8, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
    ]));
    let watermark = WatermarkSpec::try_new(
        "ts".into(),
        "ts".into(),
        col("ts", &schema).unwrap(),
        &schema,
    )
    .unwrap();
    let definition = SourceDefinition {
        table: "timed".into(),
        source: Arc::new(TimedSplits {
            schema: Arc::clone(&schema),
        }),
        watermark: Some(watermark),
        lateness: LatenessOptions {
            idle_timeout,
            ..Default::default()
        },
        dedup: None,
        lookup_refresh: None,
        state_ttl: None,
        change_op: None,
    };
    let table = StreamTable::new(
        "timed".into(),
        "test".into(),
        schema,
        Some(Arc::new(definition)),
        None,
    );
    let engine = Engine::new(&SessionOptions {
        workers,
        ..SessionOptions::default()
    })
    .unwrap();
    engine
        .context()
        .register_table("timed", Arc::new(table))
        .unwrap();
    let query = "SELECT array_agg(split ORDER BY ts) FROM TUMBLE(timed, ts, INTERVAL '1' MINUTE)
                 WHERE ts < TIMESTAMP '2026-01-01T00:01:00' GROUP BY window_start, window_end";
    let statement = parse_pipeline(query).unwrap().remove(0);
    let job = engine.submit(statement).await.unwrap().unwrap();
    let batches = engine.collect(&job).await.unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    let row = text.lines().nth(3).unwrap_or_default().to_string();
    (row, engine.shared().metrics.late_rows.get())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_split_holds_the_watermark_back() {
    for workers in [1, 2] {
        let (row, late) = first_minute(None, workers).await;
        assert!(
            row.contains("[quiet, busy, busy, quiet, busy, busy, busy]"),
            "on {workers} workers: {row}"
        );
        assert_eq!(late, 0, "on {workers} workers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_split_stops_holding_it_back_and_its_old_rows_are_late() {
    for workers in [1, 2] {
        let (row, late) = first_minute(Some(Duration::from_millis(150)), workers).await;
        assert!(
            row.contains("[quiet, busy, busy, busy, busy, busy]"),
            "on {workers} workers: {row}"
        );
        assert_eq!(late, 1, "on {workers} workers");
    }
}
