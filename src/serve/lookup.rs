//! Profile lookups: `GET /v1/views/{view}/{key}` and `POST /v1/score/{view}/{key}`. A key
//! is read as its column's type, then answered from the view's cache or, on a miss, from
//! its store through `serve`'s own connections, at most `--read-concurrency` reads at once.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::api_error::{ApiError, json};
use super::json_row::{json_string, row_json};
use super::{Cached, CachedRow, ServeState, ServedView, cache_key};
use crate::connector::store::ProfileStore;
use crate::pipeline::ViewDefinition;

impl ServeState {
    /// The row of `key` in `view`, from the cache or the store.
    async fn lookup(
        &self,
        view: &str,
        key: &str,
    ) -> Result<(&ServedView, Arc<CachedRow>), ApiError> {
        let served = self.views.get(view).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no view named '{view}' is served (served: {})",
                    self.view_names().join(", ")
                ),
            )
        })?;
        let parts = normalized_key(key, served.store.as_ref())?;
        let cached = cache_key(&parts);
        let read = || async {
            let Ok(_permit) = served.reads.try_acquire() else {
                self.metrics.reads_refused.inc();
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("too many reads of view {view} in flight (--read-concurrency); retry"),
                ));
            };
            served
                .store
                .get(&parts)
                .await
                .map_err(|e| ApiError::unavailable(format!("reading view {view}: {e}")))
        };
        let read_failed =
            |error: String| ApiError::internal(format!("reading view {view}: {error}"));
        let row = match served.cache.as_ref().map(|cache| cache.get(&cached)) {
            Some(Cached::Hit(row)) => {
                self.metrics.cache_hits.inc();
                row
            }
            Some(Cached::Miss(load)) => {
                self.metrics.cache_misses.inc();
                load.finish(read().await?).map_err(read_failed)?
            }
            None => read()
                .await?
                .map(CachedRow::of)
                .transpose()
                .map_err(read_failed)?
                .map(Arc::new),
        };
        let row = row.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("view {view} has no row with key {key}"),
            )
        })?;
        Ok((served, row))
    }
}

/// `GET /v1/views/{view}/{key}`.
pub(super) async fn get_view(
    State(state): State<Arc<ServeState>>,
    Path((view, key)): Path<(String, String)>,
) -> Response {
    match state.lookup(&view, &key).await {
        Ok((_, row)) => json(StatusCode::OK, profile_json(&view, &key, &row, None)),
        Err(error) => error.into_response(),
    }
}

/// `POST /v1/score/{view}/{key}`.
pub(super) async fn score_view(
    State(state): State<Arc<ServeState>>,
    Path((view, key)): Path<(String, String)>,
) -> Response {
    let (served, row) = match state.lookup(&view, &key).await {
        Ok(found) => found,
        Err(error) => return error.into_response(),
    };
    match scores_json(&served.definition, &row.row) {
        Ok(scores) => json(
            StatusCode::OK,
            profile_json(&view, &key, &row, Some(&scores)),
        ),
        Err(message) => ApiError::internal(message).into_response(),
    }
}

/// The view's scores of `row`, as one JSON object.
fn scores_json(view: &ViewDefinition, row: &RecordBatch) -> Result<String, String> {
    if view.scores.is_empty() {
        return Ok("{}".into());
    }
    let mut fields = Vec::with_capacity(view.scores.len());
    let mut columns = Vec::with_capacity(view.scores.len());
    for score in &view.scores {
        let value = score
            .evaluate(row)
            .and_then(|v| v.to_array())
            .map_err(|e| format!("score {} ({}): {e}", score.name, score.sql))?;
        fields.push(Field::new(&score.name, value.data_type().clone(), true));
        columns.push(value);
    }
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())?;
    row_json(&batch, 0).map_err(|e| e.to_string())
}

/// The answer to a lookup.
fn profile_json(view: &str, key: &str, row: &CachedRow, scores: Option<&str>) -> String {
    let mut out = String::with_capacity(row.json.len() + 128);
    out.push_str("{\"view\":");
    out.push_str(&json_string(view));
    out.push_str(",\"key\":");
    out.push_str(&json_string(key));
    out.push_str(",\"version\":");
    match row.version {
        Some(version) => out.push_str(&version.to_string()),
        None => out.push_str("null"),
    }
    out.push_str(",\"updated_at\":");
    match &row.updated_at {
        Some(at) => out.push_str(&json_string(at)),
        None => out.push_str("null"),
    }
    out.push_str(",\"row\":");
    out.push_str(&row.json);
    if let Some(scores) = scores {
        out.push_str(",\"scores\":");
        out.push_str(scores);
    }
    out.push('}');
    out
}

/// The key of a lookup as one text per key column: the path segment itself for a view
/// with one key column, a JSON array of the values for a composite key.
fn key_parts(key: &str, primary_key: &[String]) -> Result<Vec<String>, ApiError> {
    if primary_key.len() <= 1 {
        return Ok(vec![key.to_string()]);
    }
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the view's key is ({}): give it as a JSON array of {} values, e.g. [\"u1\",42]",
                primary_key.join(", "),
                primary_key.len()
            ),
        )
    };
    let values: Vec<serde_json::Value> = serde_json::from_str(key).map_err(|_| bad())?;
    if values.len() != primary_key.len() {
        return Err(bad());
    }
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            serde_json::Value::Bool(b) => Ok(b.to_string()),
            _ => Err(bad()),
        })
        .collect()
}

/// The key of a lookup in the form the view's rows print their keys in (what upserts
/// are cached under): each part read as its key column's type. A part that is not a value
/// of that type is a bad request.
fn normalized_key(key: &str, store: &dyn ProfileStore) -> Result<Vec<String>, ApiError> {
    let parts = key_parts(key, store.primary_key())?;
    let schema = store.schema();
    let options = FormatOptions::default();
    let strict = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    parts
        .iter()
        .zip(store.primary_key())
        .map(|(part, column)| {
            let data_type = schema
                .field_with_name(column)
                .map(|f| f.data_type().clone())
                .map_err(ApiError::internal)?;
            if data_type == DataType::Utf8 {
                return Ok(part.clone());
            }
            let text: ArrayRef = Arc::new(StringArray::from(vec![part.as_str()]));
            let typed = cast_with_options(&text, &data_type, &strict).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("key column {column} is {data_type}: '{part}' is not one"),
                )
            })?;
            let shown = ArrayFormatter::try_new(typed.as_ref(), &options)
                .map(|f| f.value(0).to_string())
                .map_err(ApiError::internal)?;
            Ok(shown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_keys_are_json_arrays() {
        let one = vec!["user_id".to_string()];
        assert_eq!(key_parts("u1", &one).unwrap(), vec!["u1"]);
        let two = vec!["user_id".to_string(), "day".to_string()];
        assert_eq!(
            key_parts(r#"["u1",20260101]"#, &two).unwrap(),
            vec!["u1", "20260101"]
        );
        assert_eq!(
            key_parts("u1", &two).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert!(key_parts(r#"["u1"]"#, &two).is_err());
    }
}
