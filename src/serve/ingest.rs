//! Webhook ingest: `POST /v1/ingest/{table}`. A request is checked on its own (signature
//! taken once, idempotency key, decoding, event times, what the table takes) before its
//! events are queued with other requests' into the table's [`IngestWriter`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use datafusion::datasource::sink::DataSink;

use super::api_error::{ApiError, json};
use super::json_row::json_string;
use super::{
    Claim, FirstUse, IngestWriter, SIGNATURE_HEADER, SeenSignatures, ServeState, SignatureError,
    TIMESTAMP_HEADER, decode_events, verify,
};
use crate::connector::{
    IngestCheck, IngestRefusal, StreamTable, WebhookOptions, connector, connector_names,
};

/// Signatures remembered per table at most, within its timestamp tolerance.
const SIGNATURES_REMEMBERED: usize = 1_000_000;

/// Where webhook events for one table go.
#[derive(Clone)]
pub(super) struct IngestTarget {
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

impl ServeState {
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

/// `POST /v1/ingest/{table}`.
pub(super) async fn ingest(
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
                state.metrics.ingested.inc_by(rows as u64);
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
