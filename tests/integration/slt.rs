//! SQL behaviour as sqllogictest files: every `tests/slt/*.slt` runs against a fresh
//! profusion engine. Queries over bounded sources run to the end of their input, so every
//! window they hold is emitted.
//!
//! ```text
//! cargo test --test integration slt::                      # run every file
//! cargo test --test integration slt::window_hop            # one file
//! PROFUSION_SLT_COMPLETE=1 cargo test --test integration slt::  # rewrite the expected output
//! ```
//!
//! With `control substitution on`, `$DATA` in a file stands for `tests/data` and
//! `__TEST_DIR__` for a fresh folder per file (for the SQLite files of materialized views).

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

/// Runs `tests/slt/{name}.slt` against a fresh engine; with `PROFUSION_SLT_COMPLETE=1`
/// rewrites its expected output instead.
async fn run_file(name: &str) {
    let file = crate::common::repository_path("")
        .join("tests/slt")
        .join(format!("{name}.slt"));
    let data = crate::common::repository_path("").join("tests/data");
    let mut runner = Runner::new(|| async {
        Ok(SltEngine {
            engine: Engine::new(&SessionOptions::default())?,
        })
    });
    runner.set_var("DATA".into(), data.display().to_string());
    runner.with_validator(validator);
    let outcome = if std::env::var_os("PROFUSION_SLT_COMPLETE").is_some() {
        runner
            .update_test_file(
                &file,
                " ",
                validator,
                default_normalizer,
                default_column_validator,
            )
            .await
            .map_err(|e| e.to_string())
    } else {
        runner
            .run_file_async(&file)
            .await
            .map_err(|e| e.display(true).to_string())
    };
    if let Err(error) = outcome {
        panic!("{}:\n{error}", file.display());
    }
}

/// One test per `.slt` file, named after it.
macro_rules! slt_files {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run_file(stringify!($name)).await;
            }
        )*

        /// Every file in `tests/slt` has its test above.
        #[test]
        fn every_file_is_listed() {
            let listed = [$(stringify!($name)),*];
            let dir = crate::common::repository_path("").join("tests/slt");
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "slt") {
                    let stem = path.file_stem().unwrap().to_string_lossy().to_string();
                    assert!(listed.contains(&stem.as_str()), "{stem}.slt is not listed in slt_files!");
                }
            }
        }
    };
}

slt_files!(
    conflict_policies,
    dedup,
    idle_splits,
    late_data,
    interval_join,
    lookup_join,
    materialized_view,
    options_errors,
    temporal_join,
    top_n,
    udfs_behaviour,
    udfs_docs,
    udfs_normalize,
    udfs_scoring,
    unbounded_queries,
    view_refresh,
    watermark,
    watermark_max_future,
    window_cumulate,
    window_hop,
    window_join,
    window_over_streams,
    window_session,
    window_tumble,
);
