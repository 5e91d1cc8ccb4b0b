//! `profusion serve`: a pipeline's profiles, scores, webhook ingest and metrics over HTTP
//! (axum, JSON).
//!
//! | method and path | scope | what |
//! | --- | --- | --- |
//! | `GET /v1/views/{view}/{key}` | read | a view's row, its version and when it was written |
//! | `POST /v1/score/{view}/{key}` | read | the same, with the view's `'score.*'` functions evaluated on it |
//! | `POST /v1/ingest/{table}` | ingest | JSON events into a Kafka or memory table |
//! | `GET /metrics` | metrics (or admin) | Prometheus text |
//! | `GET /healthz`, `GET /readyz` | none | liveness; readiness (the pipeline is running) |
//!
//! Every other path needs a token too: without a valid one a request gets 401 and reaches
//! nothing. Lookups are answered from a per-view [`ProfileCache`] that the pipeline's own
//! upserts keep fresh; misses read the store. The API is described in `docs/openapi.yaml`.

mod api_error;
mod auth;
mod connections;
mod decode;
mod exposition;
mod http_server;
mod idempotency;
mod ingest;
mod ingest_writer;
mod json_row;
mod lookup;
mod metrics;
mod metrics_endpoint;
mod profile_cache;
mod seen_signatures;
mod signature;
mod tls;

pub use auth::{Refusal, Scope, Tokens, generate_token};
pub use connections::{Connections, HttpLimits};
pub use decode::decode_events;
pub use exposition::Exposition;
pub use http_server::{serve_connections, serve_on_own_thread};
pub use idempotency::{Claim, IdempotencyKeys};
pub use ingest_writer::IngestWriter;
pub use metrics::ServerMetrics;
pub use metrics_endpoint::metrics_router;
pub use profile_cache::{Cached, CachedRow, ProfileCache, cache_key};
pub use seen_signatures::{FirstUse, SeenSignatures};
pub use signature::{SIGNATURE_HEADER, SignatureError, Signed, TIMESTAMP_HEADER, sign, verify};
pub use tls::tls_acceptor;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::connector::store::ViewStore;
use crate::connector::store::{ProfileStore, ServingReads};
use crate::pipeline::Engine;
use crate::pipeline::ViewDefinition;
use api_error::{ApiError, json, refused};
use ingest::{IngestTarget, ingest};
use lookup::{get_view, score_view};

/// The largest webhook body taken, in bytes (larger ones get 413).
pub const BODY_LIMIT: usize = 1 << 20;

/// How a server is set up.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub tokens: Tokens,
    /// Profile rows cached per view at most; 0 reads every request from the store (as
    /// `serve --group` does: other processes write rows this one would not hear of).
    pub cache_entries: usize,
    /// The runtime the pipeline runs on: webhook writes run there, not on the threads that
    /// answer requests.
    pub pipeline_runtime: tokio::runtime::Handle,
    /// The longest a request may take from its head to its answer.
    pub request_timeout: std::time::Duration,
    /// How lookups that miss the cache read a view's store.
    pub reads: ServingReads,
    /// Store reads of one view in flight at most; more get 503 at once.
    pub read_concurrency: usize,
    /// Idempotency keys remembered at most (the oldest are forgotten first).
    pub idempotency_keys: usize,
}

/// A view served by key.
struct ServedView {
    definition: Arc<ViewDefinition>,
    /// The view's store, read through `serve`'s own connections.
    store: Arc<dyn ProfileStore>,
    /// Store reads in flight.
    reads: Arc<tokio::sync::Semaphore>,
    /// `None` when rows are read from the store every time.
    cache: Option<Arc<ProfileCache>>,
}

/// What every request shares.
pub struct ServeState {
    engine: Engine,
    tokens: Tokens,
    views: HashMap<String, ServedView>,
    targets: Mutex<HashMap<String, IngestTarget>>,
    idempotency: IdempotencyKeys,
    metrics: ServerMetrics,
    exposition: Exposition,
    ready: AtomicBool,
    pipeline_runtime: tokio::runtime::Handle,
    request_timeout: std::time::Duration,
}

impl ServeState {
    /// The state of a server over `engine`'s tables and views; each view kept in a store
    /// table gets a cache its sink keeps fresh, and connections of its own for reads.
    pub fn new(engine: Engine, options: ServeOptions) -> crate::error::Result<Arc<Self>> {
        let mut views = HashMap::new();
        for definition in engine.views() {
            let ViewStore::Table(store) = &definition.store else {
                continue;
            };
            let schema = store.schema();
            let key_columns: Vec<usize> = store
                .primary_key()
                .iter()
                .filter_map(|k| schema.index_of(k).ok())
                .collect();
            let cache = (options.cache_entries > 0).then(|| {
                let cache = Arc::new(ProfileCache::new(key_columns, options.cache_entries));
                definition
                    .changes
                    .listen(Arc::clone(&cache) as Arc<dyn crate::connector::store::RowListener>);
                cache
            });
            views.insert(
                definition.name.clone(),
                ServedView {
                    store: store.for_serving(options.reads)?,
                    reads: Arc::new(tokio::sync::Semaphore::new(options.read_concurrency.max(1))),
                    definition: Arc::clone(&definition),
                    cache,
                },
            );
        }
        let metrics = ServerMetrics::default();
        let exposition = Exposition::new(&engine.shared().metrics, Some(&metrics));
        Ok(Arc::new(Self {
            engine,
            tokens: options.tokens,
            views,
            targets: Mutex::default(),
            idempotency: IdempotencyKeys::new(options.idempotency_keys),
            metrics,
            exposition,
            ready: AtomicBool::new(false),
            pipeline_runtime: options.pipeline_runtime,
            request_timeout: options.request_timeout,
        }))
    }

    /// Says whether `/readyz` answers 200.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// The names of the views served by key.
    pub fn view_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.views.keys().cloned().collect();
        names.sort();
        names
    }
}

/// The router of the API over `state`.
pub fn router(state: Arc<ServeState>) -> Router {
    Router::new()
        .route("/v1/views/{view}/{key}", get(get_view))
        .route("/v1/score/{view}/{key}", post(score_view))
        .route("/v1/ingest/{table}", post(ingest))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(Arc::clone(&state), guard))
        .with_state(state)
}

/// The metrics route and the scope a request needs, from its path.
fn route_of(path: &str) -> (usize, Option<Scope>) {
    if path.starts_with("/v1/views/") {
        (0, Some(Scope::Read))
    } else if path.starts_with("/v1/score/") {
        (1, Some(Scope::Read))
    } else if path.starts_with("/v1/ingest/") {
        (2, Some(Scope::Ingest))
    } else if path == "/metrics" {
        (3, Some(Scope::Metrics))
    } else if path == "/healthz" || path == "/readyz" {
        (4, None)
    } else {
        (5, Some(Scope::Admin))
    }
}

/// Checks the bearer token before anything else runs, and times every request.
async fn guard(State(state): State<Arc<ServeState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (route, scope) = route_of(request.uri().path());
    let admitted = match scope {
        None => Ok(()),
        Some(scope) => state.tokens.check(
            request
                .headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
            scope,
        ),
    };
    let response = match admitted {
        Ok(()) => match tokio::time::timeout(state.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                let mut response = ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request was not read and answered within {} (--request-timeout)",
                        crate::stream::DisplayNanos(state.request_timeout.as_nanos() as i64)
                    ),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
        },
        Err(refusal) => refused(refusal, scope),
    };
    state
        .metrics
        .respond(route, response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics`.
async fn metrics(State(state): State<Arc<ServeState>>) -> Response {
    state.exposition.response()
}

/// `GET /healthz`: the process answers.
async fn healthz() -> Response {
    json(StatusCode::OK, "{\"status\":\"ok\"}".into())
}

/// `GET /readyz`: the pipeline is running (or has finished without error).
async fn readyz(State(state): State<Arc<ServeState>>) -> Response {
    match state.ready.load(Ordering::SeqCst) {
        true => json(StatusCode::OK, "{\"status\":\"ready\"}".into()),
        false => json(
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"not ready\"}".into(),
        ),
    }
}

async fn not_found(method: Method) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint for {method} (see docs/openapi.yaml)"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_but_health_needs_a_scope() {
        assert_eq!(route_of("/v1/views/p/u1").1, Some(Scope::Read));
        assert_eq!(route_of("/v1/score/p/u1").1, Some(Scope::Read));
        assert_eq!(route_of("/v1/ingest/events").1, Some(Scope::Ingest));
        assert_eq!(route_of("/metrics").1, Some(Scope::Metrics));
        assert_eq!(route_of("/healthz").1, None);
        assert_eq!(route_of("/anything/else").1, Some(Scope::Admin));
    }
}
