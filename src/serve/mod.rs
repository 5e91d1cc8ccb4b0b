//! `profusion serve`: a pipeline's profiles, scores, webhook ingest and metrics over HTTP
//! (axum, JSON).
//!
//! | method and path | scope | what |
//! | --- | --- | --- |
//! | `GET /v1/views/{view}/{key}` | read | a view's row, its version and when it was written |
//! | `POST /v1/score/{view}/{key}` | read | the same, with the view's `'score.*'` functions evaluated on it |
//! | `POST /v1/ingest/{table}` | ingest | JSON events into a Kafka or memory table |
//! | `GET /metrics` | admin | Prometheus text |
//! | `GET /healthz`, `GET /readyz` | none | liveness; readiness (the pipeline is running) |
//!
//! Every other path needs a token too: without a valid one a request gets 401 and reaches
//! nothing. Lookups are answered from a per-view [`ProfileCache`] that the pipeline's own
//! upserts keep fresh; misses read the store. The API is described in `docs/openapi.yaml`.

mod auth;
mod connections;
mod decode;
mod http_server;
mod idempotency;
mod ingest_writer;
mod json_row;
mod metrics;
mod metrics_endpoint;
mod profile_cache;
mod seen_signatures;
mod signature;
mod tls;

pub use auth::{Refusal, Scope, Tokens, generate_token};
pub use connections::{Connections, HttpLimits};
pub use decode::decode_events;
pub use http_server::{serve_connections, serve_on_own_thread};
pub use idempotency::{Claim, IdempotencyKeys};
pub use ingest_writer::IngestWriter;
pub use metrics::{ServerMetrics, render};
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
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::sink::DataSink;

use crate::connector::store::ViewStore;
use crate::connector::store::{ProfileStore, ServingReads};
use crate::connector::{IngestCheck, IngestRefusal, StreamTable, WebhookOptions};
use crate::connector::{connector, connector_names};
use crate::pipeline::Engine;
use crate::pipeline::ViewDefinition;
use crate::stream::PipelineMetrics;
use json_row::{json_string, row_json};

/// The largest webhook body taken, in bytes (larger ones get 413).
pub const BODY_LIMIT: usize = 1 << 20;

/// Signatures remembered per table at most, within its timestamp tolerance.
const SIGNATURES_REMEMBERED: usize = 1_000_000;

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

/// Where webhook events for one table go.
#[derive(Clone)]
struct IngestTarget {
    webhook: WebhookOptions,
    schema: datafusion::arrow::datatypes::SchemaRef,
    writer: Arc<IngestWriter>,
    /// The signatures taken, each once.
    signatures: Arc<SeenSignatures>,
    /// The connector's check of each request's events.
    check: Option<Arc<dyn IngestCheck>>,
    /// The table's event time: events too far ahead of the clock are refused.
    event_time: Option<crate::stream::WatermarkSpec>,
}

/// What every request shares.
pub struct ServeState {
    engine: Engine,
    tokens: Tokens,
    views: HashMap<String, ServedView>,
    targets: Mutex<HashMap<String, IngestTarget>>,
    idempotency: IdempotencyKeys,
    metrics: ServerMetrics,
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
        Ok(Arc::new(Self {
            engine,
            tokens: options.tokens,
            views,
            targets: Mutex::default(),
            idempotency: IdempotencyKeys::new(options.idempotency_keys),
            metrics: ServerMetrics::default(),
            ready: AtomicBool::new(false),
            pipeline_runtime: options.pipeline_runtime,
            request_timeout: options.request_timeout,
        }))
    }

    /// Checks, before serving, every table that could take webhook events: one that must
    /// not (a followed memory table without a retention) is an error naming it.
    pub async fn check_ingest_targets(&self) -> crate::error::Result<()> {
        let mut refusals = Vec::new();
        for name in self.engine.table_names() {
            let Ok(provider) = self.engine.context().table_provider(name.as_str()).await else {
                continue;
            };
            let Some(stream) = provider.downcast_ref::<StreamTable>() else {
                continue;
            };
            let streamed = stream.source().ok().is_some_and(|s| !s.source.is_bounded());
            let (Some(connector), Ok(sink)) = (connector(stream.connector()), stream.sink()) else {
                continue;
            };
            if streamed
                && connector.takes_ingest()
                && let Err(reason) = connector.ingest_check(&name, sink)
            {
                refusals.push(reason);
            }
        }
        match refusals.is_empty() {
            true => Ok(()),
            false => Err(crate::error::Error::DataFusion(
                datafusion::error::DataFusionError::Plan(refusals.join("; ")),
            )),
        }
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
                PipelineMetrics::add(&self.metrics.reads_refused, 1);
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
                PipelineMetrics::add(&self.metrics.cache_hits, 1);
                row
            }
            Some(Cached::Miss(load)) => {
                PipelineMetrics::add(&self.metrics.cache_misses, 1);
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

    /// Where events for `table` go, set up on first use.
    async fn target(&self, table: &str) -> Result<IngestTarget, ApiError> {
        if let Some(target) = crate::stream::lock(&self.targets).get(table) {
            return Ok(target.clone());
        }
        let not_found =
            || ApiError::new(StatusCode::NOT_FOUND, format!("no table named '{table}'"));
        let provider = self
            .engine
            .context()
            .table_provider(table)
            .await
            .map_err(|_| not_found())?;
        // Tables are addressed by their declared name alone, so that each has one writer
        // and one set of idempotency keys.
        let stream = provider
            .downcast_ref::<StreamTable>()
            .filter(|stream| stream.name() == table)
            .ok_or_else(not_found)?;
        let streamed = stream.source().ok().is_some_and(|s| !s.source.is_bounded());
        let ingests = connector(stream.connector()).is_some_and(|c| c.takes_ingest());
        let sink: Arc<dyn DataSink> = match stream.sink().ok() {
            Some(_) if ingests && !streamed => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{} table {table} is not followed: the pipeline would never read its events (declare it with 'scan.mode' = 'follow')",
                        stream.connector()
                    ),
                ));
            }
            Some(sink) if ingests => Arc::clone(sink),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "table {table} (connector '{}') does not take webhook events: ingest writes to {} tables",
                        stream.connector(),
                        connector_names(|c| c.takes_ingest()).join(" and ")
                    ),
                ));
            }
        };
        let check = connector(stream.connector())
            .map(|c| c.ingest_check(table, &sink))
            .transpose()
            .map_err(|reason| ApiError::new(StatusCode::BAD_REQUEST, reason))?
            .flatten();
        let schema = datafusion::catalog::TableProvider::schema(stream);
        let target = IngestTarget {
            check,
            event_time: stream.source().ok().and_then(|s| s.watermark.clone()),
            signatures: Arc::new(SeenSignatures::new(
                stream.webhook().tolerance(),
                SIGNATURES_REMEMBERED,
            )),
            webhook: stream.webhook().clone(),
            schema: Arc::clone(&schema),
            writer: Arc::new(IngestWriter::new(
                table.to_string(),
                schema,
                sink,
                self.engine.job_context(),
                self.pipeline_runtime.clone(),
            )),
        };
        Ok(crate::stream::lock(&self.targets)
            .entry(table.to_string())
            .or_insert(target)
            .clone())
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

/// The answer to a request whose token was refused for `scope`: 401 (with
/// `WWW-Authenticate`) without a valid token, 403 with one that lacks the scope.
fn refused(refusal: Refusal, scope: Option<Scope>) -> Response {
    match refusal {
        Refusal::Unauthenticated => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is needed (Authorization: Bearer TOKEN)",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Refusal::Forbidden => ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token lacks the {} scope",
                scope.map_or(String::new(), |s| s.to_string())
            ),
        )
        .into_response(),
    }
}

/// `GET /v1/views/{view}/{key}`.
async fn get_view(
    State(state): State<Arc<ServeState>>,
    Path((view, key)): Path<(String, String)>,
) -> Response {
    match state.lookup(&view, &key).await {
        Ok((_, row)) => json(StatusCode::OK, profile_json(&view, &key, &row, None)),
        Err(error) => error.into_response(),
    }
}

/// `POST /v1/score/{view}/{key}`.
async fn score_view(
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

/// `POST /v1/ingest/{table}`.
async fn ingest(
    State(state): State<Arc<ServeState>>,
    Path(table): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = match state.target(&table).await {
        Ok(target) => target,
        Err(error) => return error.into_response(),
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = match &target.webhook.secret {
        None => None,
        Some(secret) => match verify(
            secret,
            target.webhook.tolerance(),
            text(TIMESTAMP_HEADER),
            text(SIGNATURE_HEADER),
            &body,
        ) {
            Ok(signed) => Some(signed),
            Err(error) => {
                state.metrics.reject(match error {
                    SignatureError::Expired => "expired",
                    SignatureError::Mismatch => "signature",
                    _ => "unsigned",
                });
                return ApiError::new(StatusCode::UNAUTHORIZED, error.reason()).into_response();
            }
        },
    };
    let idempotency_key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if !key.is_empty() && key.len() <= 255 => Some(key.to_string()),
        Some(_) => {
            state.metrics.reject("idempotency_key");
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    if let Some(key) = &idempotency_key {
        match state.idempotency.claim(&table, key, &body) {
            Claim::Fresh => {}
            Claim::Replay(answer) => {
                let mut response = json(StatusCode::ACCEPTED, answer);
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return response;
            }
            Claim::Conflict => {
                return ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "this Idempotency-Key was used with another body",
                )
                .into_response();
            }
            Claim::InFlight => {
                return ApiError::new(
                    StatusCode::CONFLICT,
                    "a request with this Idempotency-Key is still being written; retry",
                )
                .into_response();
            }
        }
    }
    // A signature is taken once: the same signed request under another Idempotency-Key
    // (or none) is a replay.
    let refused = signed.and_then(|signed| {
        match target.signatures.first_use(signed.tag, signed.sent, signed.now) {
            FirstUse::Fresh => None,
            FirstUse::Replayed => Some((
                "replay",
                ApiError::new(
                    StatusCode::CONFLICT,
                    "this signed request was taken already: sign each request anew",
                ),
            )),
            FirstUse::TooOld => Some((
                "expired",
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "X-Profusion-Timestamp is too old to be told from a replay now: sign the request anew",
                ),
            )),
        }
    });
    if let Some((reason, error)) = refused {
        if let Some(key) = &idempotency_key {
            state.idempotency.failed(&table, key);
        }
        state.metrics.reject(reason);
        return error.into_response();
    }
    // What a request that wrote nothing gives back: its key and its signature, so that a
    // retry may be taken.
    let release = {
        let target = target.clone();
        let state = Arc::clone(&state);
        let table = table.clone();
        let idempotency_key = idempotency_key.clone();
        move || {
            if let Some(key) = &idempotency_key {
                state.idempotency.failed(&table, key);
            }
            if let Some(signed) = &signed {
                target.signatures.forget(&signed.tag);
            }
        }
    };
    let batch = match decode_events(&target.schema, &body) {
        Ok(batch) => batch,
        Err(reason) => {
            release();
            state.metrics.reject("invalid");
            return ApiError::new(StatusCode::BAD_REQUEST, reason).into_response();
        }
    };
    let future = target
        .event_time
        .as_ref()
        .map(|spec| spec.future_rows(&batch))
        .transpose();
    match future {
        Ok(Some(rows)) if !rows.is_empty() => {
            release();
            state.metrics.reject("future_event_time");
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("event {}: {}", rows[0].row, rows[0].reason),
            )
            .into_response();
        }
        Err(error) => {
            release();
            return ApiError::internal(error).into_response();
        }
        _ => {}
    }
    if let Some(Err(refusal)) = target.check.as_ref().map(|check| check.check(&batch)) {
        release();
        let (status, reason, message) = match refusal {
            IngestRefusal::TooLarge(message) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            IngestRefusal::Unavailable(message) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        };
        state.metrics.reject(reason);
        return ApiError::new(status, format!("table {table}: {message}")).into_response();
    }
    // The write and what is recorded of it finish even if the client goes away meanwhile,
    // so an idempotency key never stays claimed by a request nobody waits for.
    let runtime = state.pipeline_runtime.clone();
    let written = runtime.spawn(async move {
        let rows = batch.num_rows();
        let written = target.writer.write(batch).await;
        match (&written, &idempotency_key) {
            (Ok(()), key) => {
                PipelineMetrics::add(&state.metrics.ingested, rows);
                let answer = format!("{{\"table\":{},\"accepted\":{rows}}}", json_string(&table));
                if let Some(key) = key {
                    state.idempotency.accepted(&table, key, answer.clone());
                }
                Ok(answer)
            }
            (Err(reason), _) => {
                release();
                Err(reason.to_string())
            }
        }
    });
    match written.await {
        Ok(Ok(answer)) => json(StatusCode::ACCEPTED, answer),
        Ok(Err(reason)) => ApiError::unavailable(reason).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

/// `GET /metrics`.
async fn metrics(State(state): State<Arc<ServeState>>) -> Response {
    metrics_text(render(state.engine.shared(), Some(&state.metrics)))
}

/// Prometheus text as an answer.
fn metrics_text(text: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
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

/// A JSON answer.
fn json(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An error answer: `{"error": "..."}` with its status, and for a failure inside the
/// server `"request_id"` (also in `X-Request-Id`) under which the log has the cause.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    request_id: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            request_id: None,
        }
    }

    /// A failure inside the server (500): its cause (paths, hosts, users, a broker's
    /// words) goes to the log under a request id, the client gets the id alone.
    fn internal(cause: impl std::fmt::Display) -> Self {
        Self::logged(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            format!("{cause}"),
        )
    }

    /// A store or broker the request needed failed (503): a retry may succeed; the cause
    /// goes to the log under a request id.
    fn unavailable(cause: impl std::fmt::Display) -> Self {
        Self::logged(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily unavailable; retry",
            format!("{cause}"),
        )
    }

    fn logged(status: StatusCode, summary: &str, cause: String) -> Self {
        let id = request_id();
        eprintln!("serve: request {id}: {} {cause}", status.as_u16());
        Self {
            status,
            message: format!("{summary} (request {id}; the server's log has the cause)"),
            request_id: Some(id),
        }
    }
}

/// A fresh id for a request whose failure is logged: 16 hex digits.
fn request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Random where the system gives randomness, else a count: ids only need to be told apart in one log.
    let number = getrandom::u64().unwrap_or_else(|_| NEXT.fetch_add(1, Ordering::Relaxed));
    format!("{number:016x}")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.request_id {
            None => format!("{{\"error\":{}}}", json_string(&self.message)),
            Some(id) => format!(
                "{{\"error\":{},\"request_id\":{}}}",
                json_string(&self.message),
                json_string(id)
            ),
        };
        let mut response = json(self.status, body);
        if let Some(id) = self
            .request_id
            .and_then(|id| HeaderValue::from_str(&id).ok())
        {
            response.headers_mut().insert("x-request-id", id);
        }
        response
    }
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
