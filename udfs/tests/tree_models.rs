//! `score_tree` gives the predictions the training libraries themselves made: XGBoost and
//! LightGBM models trained by `udfs/scripts/train_models.py`, scored on the held-out test
//! set the script wrote with each library's own predictions, agree to 1e-6.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

/// The models' folder. Read from the environment cargo runs tests in, not compiled in: a
/// test binary built in another clone of the same sources is reused by cargo, with that
/// clone's path in `env!("CARGO_MANIFEST_DIR")`.
fn models() -> String {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    format!("{root}/../tests/data/models")
}

/// The test set: feature columns (NULL where the CSV cell is empty) and the expected columns.
fn test_set() -> RecordBatch {
    let text = std::fs::read_to_string(format!("{}/test_set.csv", models())).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut columns: Vec<Vec<Option<f64>>> = vec![Vec::new(); header.len()];
    for line in lines {
        for (column, cell) in columns.iter_mut().zip(line.split(',')) {
            column.push((!cell.is_empty()).then(|| cell.parse().unwrap()));
        }
    }
    let schema = Schema::new(
        header
            .iter()
            .map(|name| Field::new(*name, DataType::Float64, true))
            .collect::<Vec<_>>(),
    );
    let arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(schema), arrays).unwrap()
}

async fn session() -> SessionContext {
    let ctx = SessionContext::new();
    profusion_udfs::register_all(&ctx).unwrap();
    let batch = test_set();
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    ctx.register_table("test_set", Arc::new(table)).unwrap();
    ctx
}

async fn largest_difference(model: &str, expected: &str) -> (usize, f64) {
    let ctx = session().await;
    let models = models();
    let sql = format!(
        "SELECT score_tree('{models}/{model}', sessions_7d, minutes_7d, pages_7d, days_since_signup, has_avatar, spend_30d) AS score, {expected} AS expected FROM test_set"
    );
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let mut rows = 0;
    let mut largest = 0.0f64;
    for batch in batches {
        let score = batch.column(0).as_primitive::<Float64Type>();
        let expected = batch.column(1).as_primitive::<Float64Type>();
        for (s, e) in score.values().iter().zip(expected.values().iter()) {
            largest = largest.max((s - e).abs());
            rows += 1;
        }
    }
    (rows, largest)
}

#[tokio::test]
async fn xgboost_binary_matches_xgboost_predictions() {
    let (rows, difference) = largest_difference("xgboost_binary.json", "xgboost_binary").await;
    assert_eq!(rows, 300);
    assert!(difference <= 1e-6, "largest difference {difference}");
}

#[tokio::test]
async fn lightgbm_binary_matches_lightgbm_predictions() {
    let (rows, difference) = largest_difference("lightgbm_binary.txt", "lightgbm_binary").await;
    assert_eq!(rows, 300);
    assert!(difference <= 1e-6, "largest difference {difference}");
}

#[tokio::test]
async fn lightgbm_regression_matches_lightgbm_predictions() {
    let (rows, difference) =
        largest_difference("lightgbm_regression.txt", "lightgbm_regression").await;
    assert_eq!(rows, 300);
    assert!(difference <= 1e-6, "largest difference {difference}");
}

#[tokio::test]
async fn a_model_with_other_features_is_a_planning_error() {
    let ctx = session().await;
    let error = ctx
        .sql(&format!(
            "SELECT score_tree('{}/xgboost_binary.json', sessions_7d) FROM test_set",
            models()
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("xgboost_binary.json")
            && error.contains("6 features (sessions_7d, minutes_7d"),
        "{error}"
    );
}
