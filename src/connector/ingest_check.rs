//! [`IngestCheck`]: what a connector checks of webhook events for one of its tables before
//! `serve` queues them with other requests' events. Requests are written together, so an
//! event the table cannot take would fail every request of its write; checked first, it
//! fails its own request alone, with its own status, and the others go on.

use datafusion::arrow::array::RecordBatch;

/// A table's check of webhook events, made per request.
pub trait IngestCheck: Send + Sync + std::fmt::Debug {
    /// Checks the events of one request.
    fn check(&self, events: &RecordBatch) -> Result<(), IngestRefusal>;
}

/// Why a request's events were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestRefusal {
    /// An event is larger than the table can take (413).
    TooLarge(String),
    /// The table cannot take events now (503).
    Unavailable(String),
}
