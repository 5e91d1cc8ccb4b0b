//! A table's webhook options: how `profusion serve` checks events pushed to
//! `POST /v1/ingest/{table}`. Any table that can be written to and read as a stream (a
//! Kafka topic, a followed memory table) takes them.
//!
//! - `'webhook.secret'`: requests must be signed with HMAC-SHA256 under this secret (see
//!   [`crate::serve`] for the headers); without it, a bearer token with the ingest scope
//!   is enough.
//!   The secret has at least 16 bytes.
//! - `'webhook.timestamp_tolerance'` (default `5 minutes`, at most 15): how far a signed
//!   request's timestamp may be from the server's clock. Within it a signature is taken
//!   once, so its signatures are remembered that long.

use std::fmt;
use std::time::Duration;

use crate::error::Error;
use crate::sql::WithOptions;

/// How far a signed request's timestamp may be from now unless the table says otherwise.
pub const DEFAULT_TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(300);

/// The widest tolerance a table may set: the server remembers every signature that long.
pub const MAX_TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(900);

/// The shortest secret taken, in bytes: a short one could be guessed offline from one
/// captured request.
pub const MIN_SECRET_BYTES: usize = 16;

/// The webhook options of one table.
#[derive(Clone, Default)]
pub struct WebhookOptions {
    /// The HMAC-SHA256 key requests are signed with; unsigned requests are refused when set.
    pub secret: Option<Vec<u8>>,
    /// How far a request's timestamp may be from now.
    pub timestamp_tolerance: Option<Duration>,
}

impl fmt::Debug for WebhookOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookOptions")
            .field("secret", &self.secret.as_ref().map(|_| "********"))
            .field("timestamp_tolerance", &self.timestamp_tolerance)
            .finish()
    }
}

impl WebhookOptions {
    /// Consumes the `webhook.*` options.
    pub fn parse(options: &mut WithOptions) -> Result<Self, Error> {
        let secret = options.take("webhook.secret");
        if let Some(secret) = &secret
            && secret.len() < MIN_SECRET_BYTES
        {
            return Err(options.error(format!(
                "option 'webhook.secret' has {} bytes: use at least {MIN_SECRET_BYTES} (e.g. openssl rand -hex 32)",
                secret.len()
            )));
        }
        let timestamp_tolerance = options.duration("webhook.timestamp_tolerance")?;
        if timestamp_tolerance.is_some() && secret.is_none() {
            return Err(options.error(
                "option 'webhook.timestamp_tolerance' applies to signed requests: set 'webhook.secret' too",
            ));
        }
        if timestamp_tolerance.is_some_and(|t| t > MAX_TIMESTAMP_TOLERANCE) {
            return Err(options.error(
                "option 'webhook.timestamp_tolerance' is at most 15 minutes: every signature is remembered that long, to take it once",
            ));
        }
        Ok(Self {
            secret: secret.map(String::into_bytes),
            timestamp_tolerance,
        })
    }

    /// The tolerance in force for signed requests.
    pub fn tolerance(&self) -> Duration {
        self.timestamp_tolerance
            .unwrap_or(DEFAULT_TIMESTAMP_TOLERANCE)
    }
}
