//! A Confluent Schema Registry client: the writer schema of an id, fetched once and cached,
//! and registering a schema under a subject. Only the small part of the registry's HTTP
//! API that Avro messages need: `GET /schemas/ids/{id}` and
//! `POST /subjects/{subject}/versions`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::Value;

use crate::error::Error;

/// The registry's media type.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A registry, with the schemas it has answered for.
#[derive(Debug)]
pub struct SchemaRegistry {
    url: String,
    client: reqwest::Client,
    by_id: Mutex<HashMap<u32, Arc<str>>>,
    /// Held while fetching, so that partitions meeting a new id at once ask only once.
    fetching: tokio::sync::Mutex<()>,
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
        let client =
            reqwest::Client::builder()
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
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The schema registered with `id`, or `None` when the registry has no such id.
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<Arc<str>>, Error> {
        if let Some(schema) = self.cached(id) {
            return Ok(Some(schema));
        }
        let _fetching = self.fetching.lock().await;
        if let Some(schema) = self.cached(id) {
            return Ok(Some(schema));
        }
        let context = format!("fetching schema id {id}");
        let response = self
            .client
            .get(format!("{}/schemas/ids/{id}", self.url))
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| self.error(&context, e))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = self.json(response, &context).await?;
        let schema: Arc<str> = match body.get("schema").and_then(Value::as_str) {
            Some(schema) => schema.into(),
            None => return Err(self.error(&context, "the answer has no \"schema\"")),
        };
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::clone(&schema));
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
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, schema.into());
        Ok(id)
    }

    fn cached(&self, id: u32) -> Option<Arc<str>> {
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
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
