//! The options of `enrich_http`, its optional third argument:
//! `'timeout=2s, retries=2, concurrency=16, cache.size=10000, cache.ttl=5m, field=/plan,
//! budget=5s, breaker.failures=5, breaker.cooldown=30s'`.
//! Keys are consumed as read; an unknown key or a bad value is a planning error naming it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::duration::parse_duration;

/// How `enrich_http` calls one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpOptions {
    /// The longest one request may take, connection included.
    pub timeout: Duration,
    /// Further attempts after a timeout, a connection error, a 429 or a 5xx answer.
    pub retries: u32,
    /// Requests in flight at once, across every query using these options.
    pub concurrency: usize,
    /// Answers kept (least recently stored are dropped first).
    pub cache_size: usize,
    /// How long an answer is reused.
    pub cache_ttl: Duration,
    /// A JSON pointer (`/plan/name`) or a top-level field name to return instead of the
    /// whole body.
    pub field: Option<String>,
    /// The longest one call (a batch's keys) waits for the endpoint; keys not answered by
    /// then get the cache's answer, even an expired one, or NULL.
    pub budget: Duration,
    /// Keys in a row that failed every attempt before the endpoint is left alone (0:
    /// never).
    pub breaker_failures: u32,
    /// How long the endpoint is left alone before one key probes it again.
    pub breaker_cooldown: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            retries: 2,
            concurrency: 16,
            cache_size: 10_000,
            cache_ttl: Duration::from_secs(300),
            field: None,
            budget: Duration::from_secs(5),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

impl HttpOptions {
    /// Parses `key=value` pairs separated by commas.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pairs = BTreeMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("'{pair}' is not key=value"));
            };
            if pairs
                .insert(key.trim().to_string(), value.trim().to_string())
                .is_some()
            {
                return Err(format!("'{}' is given twice", key.trim()));
            }
        }
        let mut options = Self::default();
        let mut take = |key: &str| pairs.remove(key);
        if let Some(v) = take("timeout") {
            options.timeout = positive_duration("timeout", &v)?;
        }
        if let Some(v) = take("retries") {
            options.retries = v
                .parse()
                .map_err(|_| format!("retries: '{v}' is not a count"))?;
        }
        if let Some(v) = take("concurrency") {
            options.concurrency = positive("concurrency", &v)?;
        }
        if let Some(v) = take("cache.size") {
            options.cache_size = v
                .parse()
                .map_err(|_| format!("cache.size: '{v}' is not a count"))?;
        }
        if let Some(v) = take("cache.ttl") {
            options.cache_ttl = parse_duration(&v).map_err(|e| format!("cache.ttl: {e}"))?;
        }
        if let Some(v) = take("field") {
            if v.is_empty() {
                return Err("field is empty".to_string());
            }
            options.field = Some(v);
        }
        if let Some(v) = take("budget") {
            options.budget = positive_duration("budget", &v)?;
        }
        if let Some(v) = take("breaker.failures") {
            options.breaker_failures = v
                .parse()
                .map_err(|_| format!("breaker.failures: '{v}' is not a count"))?;
        }
        if let Some(v) = take("breaker.cooldown") {
            options.breaker_cooldown = positive_duration("breaker.cooldown", &v)?;
        }
        if !pairs.is_empty() {
            let unknown: Vec<&str> = pairs.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown option {} (expected timeout, retries, concurrency, cache.size, cache.ttl, field, budget, breaker.failures or breaker.cooldown)",
                unknown.join(", ")
            ));
        }
        Ok(options)
    }
}

fn positive_duration(key: &str, value: &str) -> Result<Duration, String> {
    let duration = parse_duration(value).map_err(|e| format!("{key}: {e}"))?;
    if duration.is_zero() {
        return Err(format!("{key} must be positive"));
    }
    Ok(duration)
}

fn positive(key: &str, value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{key}: '{value}' is not a positive count")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key() {
        let options = HttpOptions::parse(
            "timeout=200ms, retries=0, concurrency=4, cache.size=10, cache.ttl=1m, field=/plan",
        )
        .unwrap();
        assert_eq!(options.timeout, Duration::from_millis(200));
        assert_eq!(
            (options.retries, options.concurrency, options.cache_size),
            (0, 4, 10)
        );
        assert_eq!(options.cache_ttl, Duration::from_secs(60));
        assert_eq!(options.field.as_deref(), Some("/plan"));
    }

    #[test]
    fn names_what_is_wrong() {
        assert!(
            HttpOptions::parse("timeuot=1s")
                .unwrap_err()
                .contains("unknown option timeuot")
        );
        assert!(
            HttpOptions::parse("concurrency=0")
                .unwrap_err()
                .contains("concurrency")
        );
        assert!(
            HttpOptions::parse("timeout")
                .unwrap_err()
                .contains("not key=value")
        );
    }
}
