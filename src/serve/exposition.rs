//! [`Exposition`]: the one metrics registry of a process, which the pipeline's parts and,
//! in `serve`, the HTTP server register their metrics in, encoded for Prometheus on every
//! scrape of `GET /metrics` (OpenMetrics text).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

use super::ServerMetrics;
use crate::stream::PipelineMetrics;

/// The media type of the exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of the process, under the prefix `profusion_`.
#[derive(Debug)]
pub struct Exposition(Registry);

impl Exposition {
    /// The registry of a pipeline's metrics, and the HTTP server's when there is one
    /// (`serve`; `run --metrics-listen` has none).
    pub fn new(pipeline: &PipelineMetrics, server: Option<&ServerMetrics>) -> Self {
        let mut registry = Registry::with_prefix("profusion");
        pipeline.register(&mut registry);
        if let Some(server) = server {
            server.register(&mut registry);
        }
        Self(registry)
    }

    /// The metrics as they are now, in OpenMetrics text.
    pub fn text(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        match prometheus_client::encoding::text::encode(&mut text, &self.0) {
            Ok(()) => text,
            // Writing into a String only fails if a metric's encoder does.
            Err(_) => String::new(),
        }
    }

    /// The answer to `GET /metrics`.
    pub fn response(&self) -> Response {
        let text = self.text();
        if text.is_empty() {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS))],
            text,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_exposition_holds_the_pipeline_and_the_server() {
        let pipeline = PipelineMetrics::default();
        pipeline.table("events").rows_in.inc_by(5);
        pipeline.upsert_seconds.observe(Duration::from_micros(300));
        let server = ServerMetrics::default();
        server.respond(0, 200, Duration::from_micros(80));
        server.reject("signature");
        let text = Exposition::new(&pipeline, Some(&server)).text();
        for line in [
            "profusion_source_rows_out_total{table=\"events\"} 5\n",
            "profusion_upsert_duration_seconds_bucket{le=\"0.0005\"} 1\n",
            "profusion_upsert_duration_seconds_count 1\n",
            "profusion_http_responses_total{route=\"views\",status=\"200\"} 1\n",
            "profusion_ingest_rejected_total{reason=\"signature\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
        assert!(
            text.contains("profusion_http_request_duration_seconds_bucket{"),
            "{text}"
        );
        // A route or status that answered nothing has no series.
        assert!(!text.contains("route=\"score\""), "{text}");
        let pipeline_only = Exposition::new(&pipeline, None).text();
        assert!(
            !pipeline_only.contains("profusion_http_responses"),
            "{pipeline_only}"
        );
    }
}
