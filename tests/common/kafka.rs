//! Kafka helpers shared by the tests against librdkafka's mock cluster: producing
//! messages, declaring a table over a topic, and running a query to its rows.

use std::time::Duration;

use profusion::session::SourceReads;
use profusion::sql::parse_pipeline;
use profusion::{Engine, SessionOptions};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Writes `(partition, value)` messages to `topic`, creating it with two partitions; the
/// n-th message has key `k<n>` and Kafka timestamp 1767225600000 + n ms.
pub fn produce(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    messages: &[(i32, &str)],
) {
    cluster.create_topic(topic, 2, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    for (n, (partition, value)) in messages.iter().enumerate() {
        let key = format!("k{n}");
        producer
            .send(
                BaseRecord::<str, str>::to(topic)
                    .partition(*partition)
                    .key(&key)
                    .timestamp(1_767_225_600_000 + n as i64)
                    .payload(*value),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

pub fn table(name: &str, topic: &str, servers: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE {name} (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL,
           WATERMARK FOR ts AS ts)
         WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{servers}'{extra})"
    )
}

/// Runs `query` after `setup`, reading topics continuously.
pub async fn query(setup: &str, query: &str) -> Result<Vec<String>, String> {
    query_with(SourceReads::Continuous, setup, query).await
}

/// Runs `query` after `setup`; its rows as sorted text, or its error.
pub async fn query_with(
    reads: SourceReads,
    setup: &str,
    query: &str,
) -> Result<Vec<String>, String> {
    let options = SessionOptions {
        reads,
        ..SessionOptions::default()
    };
    let engine = Engine::new(&options).unwrap();
    let mut rows = Vec::new();
    for statement in parse_pipeline(&format!("{setup}; {query}")).unwrap() {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            let batches = engine.collect(&job).await.map_err(|e| e.to_string())?;
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap();
            rows = text.to_string().lines().map(str::to_string).collect();
        }
    }
    rows.sort();
    Ok(rows)
}

pub fn event(user: &str, amount: f64, ts: &str) -> String {
    format!(r#"{{"user_id": "{user}", "amount": {amount}, "ts": "2026-01-01T{ts}Z"}}"#)
}
