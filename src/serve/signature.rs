//! Signed webhook requests. A table with `'webhook.secret'` takes only requests that carry
//!
//! - `X-Profusion-Timestamp`: the time of sending, in seconds since the Unix epoch, within
//!   the table's `'webhook.timestamp_tolerance'` (default 5 minutes) of the server's clock;
//! - `X-Profusion-Signature`: `sha256=` and the hex HMAC-SHA256, under the table's secret,
//!   of the timestamp, a `.`, and the raw body.
//!
//! The signature has GitHub's `sha256=` form, and covers the timestamp too (as Stripe's
//! and Slack's do), so a captured request cannot be replayed later under a fresh timestamp.
//! Within the tolerance, each signature is taken once ([`super::SeenSignatures`]): a
//! replay under another `Idempotency-Key` is refused. Signatures are compared in constant
//! time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header with the sending time.
pub const TIMESTAMP_HEADER: &str = "x-profusion-timestamp";
/// The header with the signature.
pub const SIGNATURE_HEADER: &str = "x-profusion-signature";

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    MissingTimestamp,
    BadTimestamp,
    /// The timestamp is further from now than the tolerance allows.
    Expired,
    MissingSignature,
    /// Not `sha256=` and 64 hex digits.
    Malformed,
    /// Well-formed, but not the body's signature under the table's secret.
    Mismatch,
}

impl SignatureError {
    /// The reason given to the client and counted in the metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingTimestamp => "missing X-Profusion-Timestamp header",
            Self::BadTimestamp => "X-Profusion-Timestamp is not a number of seconds",
            Self::Expired => "X-Profusion-Timestamp is outside the tolerance",
            Self::MissingSignature => "missing X-Profusion-Signature header",
            Self::Malformed => "the signature is not 'sha256=' and 64 hex digits",
            Self::Mismatch => "the signature does not match the body",
        }
    }
}

/// The signature header value of `body` sent at `timestamp` under `secret`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("sha256={}", hex::encode(tag))
}

/// A request whose signature verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// The sending time, in seconds since the epoch.
    pub sent: i64,
    /// The server's clock at the check, in seconds since the epoch.
    pub now: i64,
    /// The signature.
    pub tag: [u8; 32],
}

/// Checks a request's timestamp and signature headers against `body`.
pub fn verify(
    secret: &[u8],
    tolerance: Duration,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Signed, SignatureError> {
    let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?.trim();
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if now.abs_diff(sent) > tolerance.as_secs() {
        return Err(SignatureError::Expired);
    }
    let signature = signature.ok_or(SignatureError::MissingSignature)?.trim();
    let digits = signature
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(digits, &mut tag).map_err(|_| SignatureError::Malformed)?;
    mac(secret, timestamp, body)
        .verify_slice(&tag)
        .map_err(|_| SignatureError::Mismatch)?;
    Ok(Signed { sent, now, tag })
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable_mac());
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cold]
fn unreachable_mac() -> Hmac<Sha256> {
    // `new_from_slice` fails only for fixed-length keys, which HMAC does not have.
    Hmac::<Sha256>::new(&Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(300);

    fn now() -> String {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string()
    }

    #[test]
    fn a_signed_body_verifies_and_any_change_does_not() {
        let body = br#"{"user_id":"u1"}"#;
        let at = now();
        let signature = sign(b"s3cret", &at, body);
        assert_eq!(
            verify(b"s3cret", TOLERANCE, Some(&at), Some(&signature), body).map(|s| s.sent),
            Ok(at.parse::<i64>().unwrap())
        );
        assert_eq!(
            verify(
                b"s3cret",
                TOLERANCE,
                Some(&at),
                Some(&signature),
                br#"{"user_id":"u2"}"#
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", TOLERANCE, Some(&at), Some(&signature), body),
            Err(SignatureError::Mismatch)
        );
        let later = (at.parse::<i64>().unwrap() + 1).to_string();
        assert_eq!(
            verify(b"s3cret", TOLERANCE, Some(&later), Some(&signature), body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_timestamps_and_malformed_headers_are_refused() {
        let body = b"{}";
        let old = (now().parse::<i64>().unwrap() - 301).to_string();
        let signature = sign(b"k", &old, body);
        assert_eq!(
            verify(b"k", TOLERANCE, Some(&old), Some(&signature), body),
            Err(SignatureError::Expired)
        );
        let at = now();
        assert_eq!(
            verify(b"k", TOLERANCE, None, Some("x"), body),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            verify(b"k", TOLERANCE, Some("soon"), Some("x"), body),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            verify(b"k", TOLERANCE, Some(&at), None, body),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            verify(b"k", TOLERANCE, Some(&at), Some("md5=00"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"k", TOLERANCE, Some(&at), Some("sha256=zz"), body),
            Err(SignatureError::Malformed)
        );
    }
}
