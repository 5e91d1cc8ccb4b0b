//! Helpers shared by the integration tests: running a pipeline to its end, and comparing
//! streaming output with plain batch DataFusion over the same JSON lines file.

// Each test crate uses some of these helpers, not all.
#![allow(dead_code)]

pub mod counted_view;
pub mod http;
pub mod kafka;
pub mod registry;
pub mod server;

use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{JsonReadOptions, SessionContext};

/// Polls `check` every 20 ms until it returns `Ok`, for at most `timeout`; then panics
/// with `what` and the last `Err` (what was seen instead).
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => panic!("{what} never happened; {seen}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Runs the pipeline `text` to its end.
/// `relative` in the repository. Read from the environment cargo runs tests in, not
/// compiled in: a test binary built in another clone of the same sources is reused by
/// cargo, with that clone's path in `env!("CARGO_MANIFEST_DIR")`.
pub fn repository_path(relative: &str) -> std::path::PathBuf {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    std::path::Path::new(&root).join(relative)
}

pub async fn run_pipeline(text: &str) -> profusion::RunSummary {
    try_run_pipeline(text, &profusion::SessionOptions::default())
        .await
        .unwrap()
}

/// Runs the pipeline `text` with `options` to its end, or to its first error.
pub async fn try_run_pipeline(
    text: &str,
    options: &profusion::SessionOptions,
) -> Result<profusion::RunSummary, String> {
    let pipeline = profusion::Pipeline::load(text, options)
        .await
        .map_err(|e| e.to_string())?;
    pipeline.run().await.map_err(|e| e.to_string())
}

/// Writes `count` seeded `datagen` events with `columns` (3 s out of order, 1% duplicates,
/// 5 ms apart, `users` users) to a JSON lines file at `path`: the input of golden checks.
pub async fn write_generated_json(columns: &str, path: &str, count: u64, users: u64, seed: u64) {
    run_pipeline(&format!(
        "CREATE TABLE generated ({columns}) WITH (connector = 'datagen', count = {count},
           users = {users}, seed = {seed}, out_of_order = '3s', duplicate_rate = 0.01, step = '5ms');
         CREATE TABLE input ({columns}) WITH (connector = 'file', path = '{path}', format = 'json');
         INSERT INTO input SELECT * FROM generated;"
    ))
    .await;
}

/// The batch result of `query` in a plain DataFusion session where `events` is the JSON
/// lines file at `path`, with the table's `columns`.
pub async fn batch_over_json(columns: &str, path: &str, query: &str) -> Vec<String> {
    let ctx = SessionContext::new();
    ctx.sql(&format!("CREATE TABLE shape ({columns})"))
        .await
        .unwrap();
    let shape = ctx
        .table("shape")
        .await
        .unwrap()
        .schema()
        .as_arrow()
        .clone();
    ctx.register_json(
        "events",
        path,
        JsonReadOptions::default()
            .schema(&shape)
            .file_extension(".jsonl"),
    )
    .await
    .unwrap();
    lines(&ctx.sql(query).await.unwrap().collect().await.unwrap())
}

/// Prints a few rows of `expected` that `actual` lacks and of `actual` that `expected`
/// lacks, under `name`: what tells a lost key from a doubled count when a check fails.
pub fn print_difference(name: &str, expected: &[String], actual: &[String]) {
    let missing: Vec<&String> = expected
        .iter()
        .filter(|r| !actual.contains(r))
        .take(5)
        .collect();
    let wrong: Vec<&String> = actual
        .iter()
        .filter(|r| !expected.contains(r))
        .take(5)
        .collect();
    if !missing.is_empty() || !wrong.is_empty() {
        println!(
            "{name} ({} expected, {} found): expected but not found {missing:#?}\nfound but \
             not expected {wrong:#?}",
            expected.len(),
            actual.len()
        );
    }
}

/// Rows as sorted text, floats rounded to 6 decimals (sums depend on addition order).
pub fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows: Vec<String> = cells(batches).iter().map(|row| row.join(" | ")).collect();
    rows.sort();
    rows
}

/// A changelog's answer: the last row of each key (the columns at `key`), as sorted text.
pub fn latest_per_key(batches: &[RecordBatch], key: &[usize]) -> Vec<String> {
    let mut latest = std::collections::HashMap::new();
    for row in cells(batches) {
        let key: Vec<String> = key.iter().map(|&i| row[i].clone()).collect();
        latest.insert(key, row.join(" | "));
    }
    let mut rows: Vec<String> = latest.into_values().collect();
    rows.sort();
    rows
}

/// Each row's cells as text, in order, floats rounded to 6 decimals.
fn cells(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| {
                    let text = f.value(row).to_string();
                    match text.parse::<f64>() {
                        Ok(number) if text.contains('.') => format!("{number:.6}"),
                        _ => text,
                    }
                })
                .collect();
            rows.push(cells);
        }
    }
    rows
}
