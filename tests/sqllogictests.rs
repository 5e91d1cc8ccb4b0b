//! SQL behaviour as sqllogictest files: every `tests/slt/*.slt` runs against a fresh
//! profusion engine. Queries over bounded sources run to the end of their input, so every
//! window they hold is emitted.
//!
//! ```text
//! cargo test --test sqllogictests                 # run every file
//! cargo test --test sqllogictests -- window_hop   # files whose name contains window_hop
//! cargo test --test sqllogictests -- --complete   # rewrite the expected output
//! ```
//!
//! With `control substitution on`, `$DATA` in a file stands for `tests/data` and
//! `__TEST_DIR__` for a fresh folder per file (for the SQLite files of materialized views).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use profusion::sql::parse_pipeline;
use profusion::{Engine, Error, JobKind, SessionOptions, rows_written};
use sqllogictest::{
    AsyncDB, DBOutput, DefaultColumnType, Normalizer, Runner, default_column_validator,
    default_normalizer,
};

/// One engine per test file.
struct SltEngine {
    engine: Engine,
}

#[async_trait]
impl AsyncDB for SltEngine {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Error> {
        let mut output = DBOutput::StatementComplete(0);
        for statement in parse_pipeline(sql)? {
            let Some(job) = self.engine.submit(statement).await? else {
                continue;
            };
            let batches = self.engine.collect(&job).await?;
            output = match job.kind {
                JobKind::Insert | JobKind::View(_) | JobKind::Refresh(_) => {
                    DBOutput::StatementComplete(rows_written(&batches))
                }
                JobKind::Query => rows(&batches)?,
            };
        }
        Ok(output)
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "profusion"
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

fn rows(batches: &[RecordBatch]) -> Result<DBOutput<DefaultColumnType>, Error> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    let mut width = 0;
    for batch in batches {
        width = batch.num_columns();
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(datafusion::error::DataFusionError::from)?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| match f.value(row).to_string().trim_end() {
                        "" => "(empty)".to_string(),
                        value => value.to_string(),
                    })
                    .collect(),
            );
        }
    }
    Ok(DBOutput::Rows {
        types: vec![DefaultColumnType::Any; width],
        rows,
    })
}

/// Compares rows and expected lines as sequences of whitespace-separated words, so cells
/// that span several lines (plans from EXPLAIN) compare like any other.
fn validator(_normalizer: Normalizer, actual: &[Vec<String>], expected: &[String]) -> bool {
    let actual = actual
        .iter()
        .map(|row| row.join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    let expected = expected.join("\n");
    actual.split_whitespace().eq(expected.split_whitespace())
}

fn test_files(filter: Option<&str>) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "slt"))
        .filter(|path| filter.is_none_or(|f| path.to_string_lossy().contains(f)))
        .collect();
    files.sort();
    files
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let complete = args.iter().any(|a| a == "--complete");
    let filter = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut failures = 0;
    let files = test_files(filter);
    for file in &files {
        let mut runner = Runner::new(|| async {
            Ok(SltEngine {
                engine: Engine::new(&SessionOptions::default())?,
            })
        });
        runner.set_var("DATA".into(), data.display().to_string());
        runner.with_validator(validator);
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let outcome = if complete {
            runner
                .update_test_file(
                    file,
                    " ",
                    validator,
                    default_normalizer,
                    default_column_validator,
                )
                .await
                .map_err(|e| e.to_string())
        } else {
            runner
                .run_file_async(file)
                .await
                .map_err(|e| e.display(true).to_string())
        };
        match outcome {
            Ok(()) => println!("ok      {name}"),
            Err(error) => {
                failures += 1;
                println!("FAILED  {name}\n{error}\n");
            }
        }
    }
    println!("\n{} files, {} failed", files.len(), failures);
    if failures > 0 {
        std::process::exit(1);
    }
}
