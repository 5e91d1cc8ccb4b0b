//! The behavioural aggregates' states merge into the same answers: a query split over four
//! partitions (partial aggregates whose states DataFusion merges, the contract profusion's
//! checkpoints use to save and restore them) gives what one partition gives.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

/// 4,000 events of 40 users over about three hours, in `partitions` pieces, interleaved so
/// every piece holds part of every user's events, out of time order.
fn events(partitions: usize) -> (Arc<Schema>, Vec<Vec<RecordBatch>>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("page", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("label", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let mut pieces = vec![Vec::new(); partitions];
    for chunk in 0..8 {
        let rows: Vec<usize> = (chunk * 500..(chunk + 1) * 500).collect();
        let user: StringArray = rows.iter().map(|i| Some(format!("u{}", i % 40))).collect();
        let page: StringArray = rows
            .iter()
            .map(|i| (i % 11 != 0).then(|| format!("/p{}", (i * 7) % 5)))
            .collect();
        let amount: Float64Array = rows
            .iter()
            .map(|i| (i % 3 != 0).then_some((i % 17) as f64 * 1.5))
            .collect();
        let label: Int64Array = rows
            .iter()
            .map(|i| Some(((i * 13) % 7 < 3) as i64))
            .collect();
        let ts: TimestampMillisecondArray = rows
            .iter()
            .map(|i| Some(1_767_225_600_000 + ((i * 7919) % 4000) as i64 * 2_700))
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(user),
            Arc::new(page),
            Arc::new(amount),
            Arc::new(label),
            Arc::new(ts),
        ];
        pieces[chunk % partitions]
            .push(RecordBatch::try_new(Arc::clone(&schema), columns).unwrap());
    }
    (schema, pieces)
}

async fn rows(partitions: usize, sql: &str) -> Vec<String> {
    let config = SessionConfig::new().with_target_partitions(partitions);
    let ctx = SessionContext::new_with_config(config);
    profusion_udfs::register_all(&ctx).unwrap();
    let (schema, pieces) = events(partitions);
    ctx.register_table(
        "events",
        Arc::new(MemTable::try_new(schema, pieces).unwrap()),
    )
    .unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let options = FormatOptions::default().with_null("NULL");
    let mut lines = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            lines.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    lines.sort();
    lines
}

#[tokio::test]
async fn merged_partial_states_give_the_single_partition_answers() {
    let sql = "SELECT user_id,
                 round(decayed_count(ts, INTERVAL '20' MINUTE), 9),
                 round(decayed_sum(amount, ts, INTERVAL '20' MINUTE), 9),
                 top_k(page, 3),
                 session_count(ts, INTERVAL '90' SECOND)
               FROM events GROUP BY user_id";
    let one = rows(1, sql).await;
    let four = rows(4, sql).await;
    assert_eq!(one.len(), 40);
    assert_eq!(one, four);
}

#[tokio::test]
async fn merged_online_models_keep_every_row() {
    let sql = "SELECT m['rows'], array_length(m['weights']) FROM (
                 SELECT online_logistic(label, amount / 25.0, length(page) / 3.0) AS m FROM events)";
    let expected_rows = 4000 / 3 * 2 * 10 / 11; // rows with an amount and a page (about)
    let four = rows(4, sql).await;
    let one = rows(1, sql).await;
    assert_eq!(one, four, "every row is seen once, merged or not");
    let seen: i64 = one[0].split(' ').next().unwrap().parse().unwrap();
    assert!((seen - expected_rows as i64).abs() < 60, "{seen} rows");
}
