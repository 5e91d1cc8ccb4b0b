//! `profusion run --metrics-listen ADDR`: `GET /metrics` (and `GET /healthz`) of a
//! pipeline that serves nothing else, so that Prometheus can scrape it. `/metrics` takes a
//! token of the `metrics` (or `admin`) scope, as in `serve`; a server on a loopback address
//! may go without.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::api_error::{ApiError, refused};
use super::{Exposition, Scope, Tokens, healthz};
use crate::stream::PipelineContext;

/// What the endpoint reads.
struct PipelineMetricsEndpoint {
    exposition: Exposition,
    tokens: Tokens,
}

/// The router of `run --metrics-listen`.
pub fn metrics_router(pipeline: Arc<PipelineContext>, tokens: Tokens) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "only GET /metrics and GET /healthz are served here",
            )
            .into_response()
        })
        .with_state(Arc::new(PipelineMetricsEndpoint {
            exposition: Exposition::new(&pipeline.metrics, None),
            tokens,
        }))
}

async fn metrics(
    State(endpoint): State<Arc<PipelineMetricsEndpoint>>,
    headers: HeaderMap,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match endpoint.tokens.check(presented, Scope::Metrics) {
        Ok(()) => endpoint.exposition.response(),
        Err(refusal) => refused(refusal, Some(Scope::Metrics)),
    }
}
