//! [`ServerMetrics`]: what the HTTP server counts (requests and responses by route,
//! webhook refusals, the profile cache and store reads), registered in the `/metrics`
//! registry next to the pipeline's metrics.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::stream::{Histogram, Labelled};

/// The HTTP routes requests are counted under.
pub const ROUTES: [&str; 6] = ["views", "score", "ingest", "metrics", "health", "other"];

/// The status codes the server answers with, as numbers and as labels; anything else
/// counts as the last label, `other`.
const STATUS_CODES: [u16; 13] = [
    200, 202, 400, 401, 403, 404, 405, 408, 409, 413, 422, 500, 503,
];
const STATUSES: [&str; STATUS_CODES.len() + 1] = [
    "200", "202", "400", "401", "403", "404", "405", "408", "409", "413", "422", "500", "503",
    "other",
];

/// What the server itself counts. A series appears once it has counted something.
#[derive(Debug)]
pub struct ServerMetrics {
    /// Request latency by route.
    requests: Labelled<Histogram>,
    /// Each route's series of `requests`, kept so that a request takes no lock.
    request_series: [OnceLock<Histogram>; ROUTES.len()],
    /// Responses by route and status.
    responses: Labelled<Counter>,
    /// Each route and status's series of `responses`.
    response_series: [[OnceLock<Counter>; STATUSES.len()]; ROUTES.len()],
    /// Webhook requests refused, by reason.
    rejected: Labelled<Counter>,
    /// Webhook events accepted.
    pub ingested: Counter,
    /// Profile lookups answered from the cache, and from the store.
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    /// Store reads refused because a view had `--read-concurrency` in flight.
    pub reads_refused: Counter,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self {
            requests: Labelled::new(&["route"]),
            request_series: Default::default(),
            responses: Labelled::new(&["route", "status"]),
            response_series: Default::default(),
            rejected: Labelled::new(&["reason"]),
            ingested: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            reads_refused: Counter::default(),
        }
    }
}

impl ServerMetrics {
    /// Registers the server's metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by route",
            self.requests.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP responses, by route and status",
            self.responses.clone(),
        );
        registry.register(
            "ingest_rejected",
            "Webhook requests refused, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "ingested_events",
            "Webhook events accepted",
            self.ingested.clone(),
        );
        registry.register(
            "profile_cache_hits",
            "Profile lookups answered from the cache",
            self.cache_hits.clone(),
        );
        registry.register(
            "profile_cache_misses",
            "Profile lookups that read the store",
            self.cache_misses.clone(),
        );
        registry.register(
            "profile_reads_refused",
            "Profile lookups refused (503) because their view had --read-concurrency store reads in flight",
            self.reads_refused.clone(),
        );
    }

    /// Counts a response on `route` (an index of [`ROUTES`]).
    pub fn respond(&self, route: usize, status: u16, elapsed: Duration) {
        self.request_series[route]
            .get_or_init(|| self.requests.get(&[ROUTES[route]]))
            .observe(elapsed);
        let code = STATUS_CODES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUS_CODES.len());
        self.response_series[route][code]
            .get_or_init(|| self.responses.get(&[ROUTES[route], STATUSES[code]]))
            .inc();
    }

    /// Counts a refused webhook request.
    pub fn reject(&self, reason: &'static str) {
        self.rejected.get(&[reason]).inc();
    }
}
