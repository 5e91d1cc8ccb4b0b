//! `enrich_http(url_template, key [, options])`: data for a key from an HTTP JSON API, as
//! DataFusion's async scalar function (planned into an `AsyncFuncExec`, so a batch's
//! requests run concurrently while the rest of the plan waits for none of them). Each
//! endpoint (template and options) has a cache, a limit on requests in flight, a timeout
//! and retries with backoff, a circuit breaker ([`CircuitBreaker`]: after failures in a
//! row, keys are answered from the cache or NULL for a cool-down, then one probes), and a
//! budget per call (a batch waits for it at most `budget`). A key that still gets no
//! answer gives the cache's last answer, even expired, or NULL. Every outcome is counted
//! in [`EnrichStats`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, exec_datafusion_err, plan_err};
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use futures::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::Semaphore;

use super::circuit::{Admission, CircuitBreaker};
use super::options::HttpOptions;
use super::response_cache::{Answer, ResponseCache};
use crate::arguments::{constant_string, scalar_string};
use crate::docs::ENRICHMENT;

/// Where the key goes in a URL template.
const KEY_PLACEHOLDER: &str = "{key}";

/// Bytes of a key that are percent-encoded: all but RFC 3986's unreserved characters.
const KEY_ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Counts of what `enrich_http` did, for progress output and metrics.
#[derive(Debug, Default)]
pub struct EnrichStats {
    /// Keys answered from the cache.
    pub cache_hits: AtomicU64,
    /// HTTP requests sent, retries included.
    pub requests: AtomicU64,
    /// Keys the endpoint said it does not have (404): NULL, cached.
    pub not_found: AtomicU64,
    /// Keys that got NULL because every attempt failed (not cached).
    pub failures: AtomicU64,
    /// Attempts that ran out of time.
    pub timeouts: AtomicU64,
    /// Attempts made again after a failed one.
    pub retries: AtomicU64,
    /// Keys answered without a call because the endpoint's breaker was open.
    pub short_circuited: AtomicU64,
    /// Keys left unanswered when their call's budget ran out.
    pub over_budget: AtomicU64,
    /// Keys given an expired cached answer because the endpoint failed them.
    pub stale_answers: AtomicU64,
}

impl EnrichStats {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Each outcome by its name, as of now.
    pub fn snapshot(&self) -> [(&'static str, u64); 9] {
        [
            ("cache_hit", &self.cache_hits),
            ("request", &self.requests),
            ("not_found", &self.not_found),
            ("failure", &self.failures),
            ("timeout", &self.timeouts),
            ("retry", &self.retries),
            ("short_circuited", &self.short_circuited),
            ("over_budget", &self.over_budget),
            ("stale_answer", &self.stale_answers),
        ]
        .map(|(name, c)| (name, c.load(Ordering::Relaxed)))
    }
}

/// One endpoint: a URL template called with one set of options.
#[derive(Debug)]
struct Endpoint {
    template: String,
    options: HttpOptions,
    client: reqwest::Client,
    in_flight: Semaphore,
    cache: Mutex<ResponseCache>,
    breaker: CircuitBreaker,
}

/// The `enrich_http` function, with its endpoints and counts.
#[derive(Debug)]
pub struct EnrichHttp {
    signature: Signature,
    endpoints: Mutex<HashMap<(String, HttpOptions), Arc<Endpoint>>>,
    stats: Arc<EnrichStats>,
}

crate::function_identity!(EnrichHttp);

impl Default for EnrichHttp {
    fn default() -> Self {
        Self {
            // DataFusion's async wrapper does not ask a function to coerce its arguments:
            // the accepted types are listed (integer keys are cast to text when invoked).
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8, DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64, DataType::Utf8]),
                ],
                Volatility::Volatile,
            ),
            endpoints: Mutex::new(HashMap::new()),
            stats: Arc::new(EnrichStats::default()),
        }
    }
}

impl EnrichHttp {
    /// The function, counting into `stats` (shared with whoever reports them).
    pub fn with_stats(stats: Arc<EnrichStats>) -> Self {
        Self {
            stats,
            ..Self::default()
        }
    }

    /// What this function has done so far.
    pub fn stats(&self) -> Arc<EnrichStats> {
        Arc::clone(&self.stats)
    }

    fn options(&self, text: Option<&str>) -> Result<HttpOptions> {
        match text {
            None => Ok(HttpOptions::default()),
            Some(text) => HttpOptions::parse(text).map_err(|e| {
                datafusion::common::plan_datafusion_err!("enrich_http: options '{text}': {e}")
            }),
        }
    }

    fn endpoint(&self, template: &str, options: HttpOptions) -> Result<Arc<Endpoint>> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let key = (template.to_string(), options);
        if let Some(endpoint) = endpoints.get(&key) {
            return Ok(Arc::clone(endpoint));
        }
        let options = key.1.clone();
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .pool_max_idle_per_host(options.concurrency)
            .build()
            .map_err(|e| exec_datafusion_err!("enrich_http: HTTP client: {e}"))?;
        let endpoint = Arc::new(Endpoint {
            template: template.to_string(),
            in_flight: Semaphore::new(options.concurrency),
            cache: Mutex::new(ResponseCache::new(options.cache_size, options.cache_ttl)),
            breaker: CircuitBreaker::new(options.breaker_failures, options.breaker_cooldown),
            client,
            options,
        });
        endpoints.insert(key, Arc::clone(&endpoint));
        Ok(endpoint)
    }
}

fn check_template(template: &str) -> Result<()> {
    if !template.contains(KEY_PLACEHOLDER) {
        return plan_err!("enrich_http: the URL template '{template}' has no {KEY_PLACEHOLDER}");
    }
    let example = template.replace(KEY_PLACEHOLDER, "k");
    match url::Url::parse(&example) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(()),
        Ok(url) => plan_err!(
            "enrich_http: the URL template '{template}' is {}, not http or https",
            url.scheme()
        ),
        Err(e) => plan_err!("enrich_http: the URL template '{template}' is not a URL: {e}"),
    }
}

impl Endpoint {
    /// The answer for `key`: from the cache, else from the endpoint.
    async fn answer(&self, key: &str, stats: &EnrichStats) -> Answer {
        if let Some(answer) = self.lock_cache().get(key, Instant::now()) {
            EnrichStats::count(&stats.cache_hits);
            return answer.clone();
        }
        let attempts = match self.breaker.admit(Instant::now()) {
            Admission::Refuse => {
                EnrichStats::count(&stats.short_circuited);
                return self.fallback(key, stats);
            }
            // A probe is one attempt: the endpoint is thought to be down.
            Admission::Probe => 1,
            Admission::Call => self.options.retries + 1,
        };
        let url = self.template.replace(
            KEY_PLACEHOLDER,
            &utf8_percent_encode(key, KEY_ENCODED).to_string(),
        );
        for attempt in 0..attempts {
            if attempt > 0 {
                EnrichStats::count(&stats.retries);
                tokio::time::sleep(Duration::from_millis(50 << (attempt - 1).min(6))).await;
            }
            match self.fetch(&url, stats).await {
                Fetched::Value(body) => {
                    self.breaker.succeeded();
                    let answer = self.select(body);
                    self.lock_cache()
                        .insert(key.to_string(), answer.clone(), Instant::now());
                    return answer;
                }
                Fetched::NotFound => {
                    self.breaker.succeeded();
                    EnrichStats::count(&stats.not_found);
                    self.lock_cache()
                        .insert(key.to_string(), None, Instant::now());
                    return None;
                }
                Fetched::Refused => break,
                Fetched::Retry => {}
            }
        }
        self.breaker.failed(Instant::now());
        EnrichStats::count(&stats.failures);
        self.fallback(key, stats)
    }

    /// What a key gets when the endpoint gave no answer: the cache's last one, even
    /// expired, or NULL.
    fn fallback(&self, key: &str, stats: &EnrichStats) -> Answer {
        let stale = self.lock_cache().get_stale(key).cloned();
        if stale.is_some() {
            EnrichStats::count(&stats.stale_answers);
        }
        stale.flatten()
    }

    async fn fetch(&self, url: &str, stats: &EnrichStats) -> Fetched {
        let Ok(_permit) = self.in_flight.acquire().await else {
            return Fetched::Refused;
        };
        EnrichStats::count(&stats.requests);
        let response = match self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => {
                if e.is_timeout() {
                    EnrichStats::count(&stats.timeouts);
                }
                return Fetched::Retry;
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Fetched::NotFound;
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Fetched::Retry;
        }
        if !status.is_success() {
            return Fetched::Refused;
        }
        match response.text().await {
            Ok(body) => Fetched::Value(body),
            Err(e) => {
                if e.is_timeout() {
                    EnrichStats::count(&stats.timeouts);
                }
                Fetched::Retry
            }
        }
    }

    /// The body, or the field the options select from it (NULL when it has none).
    fn select(&self, body: String) -> Answer {
        let Some(field) = &self.options.field else {
            return Some(body);
        };
        let value: serde_json::Value = serde_json::from_str(&body).ok()?;
        let selected = if field.starts_with('/') {
            value.pointer(field)?
        } else {
            value.get(field)?
        };
        match selected {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, ResponseCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The outcome of one attempt.
enum Fetched {
    Value(String),
    NotFound,
    /// Worth another attempt: a timeout, a connection error, a 429 or a 5xx.
    Retry,
    /// Not worth another attempt: another 4xx.
    Refused,
}

impl ScalarUDFImpl for EnrichHttp {
    fn name(&self) -> &str {
        "enrich_http"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        check_template(constant_string(
            self.name(),
            "URL template",
            args.scalar_arguments,
            0,
        )?)?;
        if args.arg_fields.len() == 3 {
            self.options(Some(constant_string(
                self.name(),
                "options",
                args.scalar_arguments,
                2,
            )?))?;
        }
        Ok(Arc::new(Field::new(self.name(), DataType::Utf8, true)))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        datafusion::common::internal_err!("enrich_http runs asynchronously")
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for EnrichHttp {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let template = scalar_string(self.name(), &args.args, 0)?;
        let options = match args.args.len() {
            3 => self.options(Some(scalar_string(self.name(), &args.args, 2)?))?,
            _ => self.options(None)?,
        };
        let endpoint = self.endpoint(template, options)?;
        let keys = cast(&args.args[1].to_array(args.number_rows)?, &DataType::Utf8)?;
        let keys = keys.as_string::<i32>();
        // One request per distinct key of the batch.
        let mut distinct: Vec<&str> = keys.iter().flatten().collect();
        distinct.sort_unstable();
        distinct.dedup();
        let distinct: Vec<String> = distinct.into_iter().map(str::to_string).collect();
        let asked = distinct.len();
        let mut answers: HashMap<String, Answer> = futures::stream::iter(distinct.clone())
            .map(|key| {
                let endpoint = Arc::clone(&endpoint);
                let stats = Arc::clone(&self.stats);
                async move {
                    let answer = endpoint.answer(&key, &stats).await;
                    (key, answer)
                }
            })
            .buffer_unordered(endpoint.options.concurrency)
            // A slow endpoint holds the batch up by the budget at most.
            .take_until(tokio::time::sleep(endpoint.options.budget))
            .collect()
            .await;
        if answers.len() < asked {
            for key in distinct {
                if let std::collections::hash_map::Entry::Vacant(missing) = answers.entry(key) {
                    EnrichStats::count(&self.stats.over_budget);
                    let answer = endpoint.fallback(missing.key(), &self.stats);
                    missing.insert(answer);
                }
            }
        }
        let values: StringArray = keys
            .iter()
            .map(|key| key.and_then(|k| answers.get(k).cloned().flatten()))
            .collect();
        let values: ArrayRef = Arc::new(values);
        Ok(ColumnarValue::Array(values))
    }
}

/// The function's documentation. DataFusion's async wrapper does not pass it on, so the
/// library's own listing ([`crate::documentation`]) reads it here.
pub fn documentation() -> &'static Documentation {
    &DOC
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        ENRICHMENT,
        "Data for a key from an HTTP JSON API: GET url_template with {key} replaced by the \
         key (percent-encoded), returning the body (or one field of it) as text. Answers are \
         cached; requests run concurrently up to a limit, each with a timeout, and are \
         retried with backoff after a timeout, a connection error, a 429 or a 5xx. A 404 \
         gives NULL. A key that still fails gets its last cached answer, even expired, or \
         NULL; failures are counted, never cached. After breaker.failures keys in a row \
         fail, the API is left alone for breaker.cooldown (keys answered from the cache or \
         NULL at once), then one key probes it. A call waits for the API at most budget. \
         Options: timeout (2s), retries (2), concurrency (16), cache.size (10000), \
         cache.ttl (5m), field (a top-level name or a JSON pointer such as /plan/name), \
         budget (5s), breaker.failures (5; 0 never opens), breaker.cooldown (30s).",
        "enrich_http(url_template, key[, options])",
    )
    .with_sql_example(
        "```sql\n> SELECT user_id, enrich_http('http://crm.internal/users/{key}', user_id, 'field=plan, timeout=300ms') AS plan\n  FROM signups;\n```",
    )
    .with_argument("url_template", "An http or https URL with {key} where the key goes.")
    .with_argument("key", "The key to look up: text or an integer.")
    .with_argument("options", "Optional: 'key=value, ...' from the list above.")
    .build()
});
