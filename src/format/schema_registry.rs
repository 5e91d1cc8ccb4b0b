//! A Confluent Schema Registry client: the writer schema of an id, fetched once and cached,
//! and registering a schema under a subject. Only the small part of the registry's HTTP
//! API that Avro messages need: `GET /schemas/ids/{id}` and
//! `POST /subjects/{subject}/versions`.
//!
//! A registry that hangs or is slow holds nothing up for long: every request has a connect
//! and a total timeout, and ids are fetched each on its own (partitions meeting one new id
//! at once ask once; another id does not wait for it). An id the registry does not know is
//! remembered for a while ([`UNKNOWN_TTL`], at most [`UNKNOWN_CAP`] of them), so that a
//! stream of records naming it does not become a stream of requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::error::Error;
use crate::stream::lock;

/// The registry's media type.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// How long connecting to the registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request to the registry may take, from connecting to its last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an id the registry does not know is taken as unknown without asking again.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(30);
/// The most unknown ids remembered.
pub const UNKNOWN_CAP: usize = 10_000;

/// A registry, with the schemas it has answered for.
#[derive(Debug)]
pub struct SchemaRegistry {
    url: String,
    client: reqwest::Client,
    by_id: Mutex<HashMap<u32, Arc<str>>>,
    /// Ids the registry said it does not know, and when it said so.
    unknown: Mutex<HashMap<u32, Instant>>,
    /// One lock per id being fetched, so that partitions meeting a new id at once ask
    /// only once, and other ids do not wait for it.
    fetching: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
}

impl SchemaRegistry {
    /// A client of the registry at `url` (`http://host:port`, optionally with a path).
    pub fn new(url: &str) -> Result<Self, Error> {
        let parsed = url::Url::parse(url).map_err(|source| Error::SchemaRegistry {
            url: url.to_string(),
            context: "parsing the URL".into(),
            source: Box::new(source),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::SchemaRegistry {
                url: url.to_string(),
                context: "parsing the URL".into(),
                source: "the URL must start with http:// or https://".into(),
            });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|source| Error::SchemaRegistry {
                url: url.to_string(),
                context: "creating the HTTP client".into(),
                source: Box::new(source),
            })?;
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            client,
            by_id: Mutex::new(HashMap::new()),
            unknown: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
        })
    }

    /// The schema registered with `id`, or `None` when the registry has no such id.
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<Arc<str>>, Error> {
        if let Some(known) = self.known(id) {
            return Ok(known);
        }
        let this_id = Arc::clone(lock(&self.fetching).entry(id).or_default());
        let fetched = {
            let _fetching = this_id.lock().await;
            match self.known(id) {
                Some(known) => Ok(known),
                None => self.fetch(id).await,
            }
        };
        lock(&self.fetching).remove(&id);
        fetched
    }

    /// What is known of `id` without asking: its schema, or (`Some(None)`) that the
    /// registry did not know it a moment ago.
    fn known(&self, id: u32) -> Option<Option<Arc<str>>> {
        if let Some(schema) = self.cached(id) {
            return Some(Some(schema));
        }
        let unknown = lock(&self.unknown);
        unknown
            .get(&id)
            .filter(|at| at.elapsed() < UNKNOWN_TTL)
            .map(|_| None)
    }

    /// Asks the registry for the schema of `id`.
    async fn fetch(&self, id: u32) -> Result<Option<Arc<str>>, Error> {
        let context = format!("fetching schema id {id}");
        let response = self
            .client
            .get(format!("{}/schemas/ids/{id}", self.url))
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| self.error(&context, e))?;
        if response.status() == StatusCode::NOT_FOUND {
            self.remember_unknown(id);
            return Ok(None);
        }
        let body = self.json(response, &context).await?;
        let schema: Arc<str> = match body.get("schema").and_then(Value::as_str) {
            Some(schema) => schema.into(),
            None => return Err(self.error(&context, "the answer has no \"schema\"")),
        };
        lock(&self.by_id).insert(id, Arc::clone(&schema));
        Ok(Some(schema))
    }

    /// Registers `schema` (Avro JSON) under `subject`; its id (the existing one when the
    /// subject already holds the same schema).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, Error> {
        let context = format!("registering a schema under subject {subject}");
        let body = serde_json::json!({ "schema": schema }).to_string();
        let response = self
            .client
            .post(format!("{}/subjects/{subject}/versions", self.url))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .map_err(|e| self.error(&context, e))?;
        let answer = self.json(response, &context).await?;
        let id = answer
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| self.error(&context, "the answer has no \"id\""))?;
        lock(&self.by_id).insert(id, schema.into());
        Ok(id)
    }

    /// Remembers that the registry does not know `id`, forgetting the oldest such id when
    /// [`UNKNOWN_CAP`] are remembered.
    fn remember_unknown(&self, id: u32) {
        let mut unknown = lock(&self.unknown);
        unknown.retain(|_, at| at.elapsed() < UNKNOWN_TTL);
        if unknown.len() >= UNKNOWN_CAP
            && let Some(oldest) = unknown.iter().min_by_key(|(_, at)| **at).map(|(id, _)| *id)
        {
            unknown.remove(&oldest);
        }
        unknown.insert(id, Instant::now());
    }

    fn cached(&self, id: u32) -> Option<Arc<str>> {
        lock(&self.by_id).get(&id).cloned()
    }

    /// The JSON body of a successful answer; an error with the registry's message otherwise.
    async fn json(&self, response: reqwest::Response, context: &str) -> Result<Value, Error> {
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.error(context, e))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(self.error(context, format!("HTTP {status}: {text}")));
        }
        serde_json::from_slice(&bytes).map_err(|e| self.error(context, e))
    }

    fn error(
        &self,
        context: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::SchemaRegistry {
            url: self.url.clone(),
            context: context.to_string(),
            source: source.into(),
        }
    }
}
