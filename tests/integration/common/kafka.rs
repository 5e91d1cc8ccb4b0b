//! Kafka helpers shared by the tests: producing messages, declaring a table over a topic,
//! running a query to its rows, creating topics, reading messages back and committed
//! offsets; and the out-of-process broker, when `scripts/test` has started one.

use std::time::{Duration, Instant};

use profusion::sql::parse_pipeline;
use profusion::stream::SourceReads;
use profusion::{Engine, SessionOptions};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

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

/// Sends `value` to `partition` of `topic`, polling the producer while its local queue is
/// full; any other error fails the test.
pub fn send(producer: &BaseProducer, topic: &str, partition: i32, value: &str) {
    let mut record = BaseRecord::<(), str>::to(topic)
        .partition(partition)
        .payload(value);
    while let Err((error, back)) = producer.send(record) {
        assert_eq!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::QueueFull),
            "{error}"
        );
        producer.poll(Duration::from_millis(10));
        record = back;
    }
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

/// Six events over two partitions, three minutes of event time: the windows of minutes 0
/// and 1 close once both partitions have passed minute 2, whose window stays open.
pub const THREE_MINUTES: [(i32, &str, f64, &str); 6] = [
    (0, "u1", 1.0, "00:00:10"),
    (0, "u2", 2.0, "00:01:10"),
    (0, "u1", 4.0, "00:02:30"),
    (1, "u1", 8.0, "00:00:20"),
    (1, "u3", 16.0, "00:01:20"),
    (1, "u3", 32.0, "00:02:40"),
];

/// Produces an [`event`] per `(partition, user, amount, time of day)` to `topic`, as
/// [`produce`] does.
pub fn produce_events(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    events: &[(i32, &str, f64, &str)],
) {
    let values: Vec<(i32, String)> = events
        .iter()
        .map(|(partition, user, amount, ts)| (*partition, event(user, *amount, ts)))
        .collect();
    let messages: Vec<(i32, &str)> = values.iter().map(|(p, v)| (*p, v.as_str())).collect();
    produce(cluster, topic, &messages);
}

/// One event as JSON: `user_id`, `amount`, and `ts` at `ts` (a time of day) on 2026-01-01.
pub fn event(user: &str, amount: f64, ts: &str) -> String {
    format!(r#"{{"user_id": "{user}", "amount": {amount}, "ts": "2026-01-01T{ts}Z"}}"#)
}

/// The out-of-process broker `scripts/test` starts (`PROFUSION_TEST_KAFKA`), or `None`,
/// after saying that the test is skipped.
pub fn test_broker() -> Option<String> {
    let servers = std::env::var("PROFUSION_TEST_KAFKA").ok();
    if servers.is_none() {
        eprintln!(
            "skipped: PROFUSION_TEST_KAFKA is not set; scripts/test starts a broker and sets it"
        );
    }
    servers
}

/// `prefix` made unique to this run, for topics and groups on a shared broker.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

/// Creates each `(topic, partitions)`.
pub async fn create_topics(servers: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .unwrap();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let created = admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// A consumer of `topic`'s first `partitions` partitions, from their beginning.
pub fn consumer_from_start(servers: &str, topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "test-reader")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    consumer
}

/// A message as `key => value`: `-` for no key, `tombstone` for no value.
pub fn key_value(message: &impl Message) -> String {
    let text = |bytes: Option<&[u8]>, none: &str| {
        bytes.map_or(none.to_string(), |b| String::from_utf8_lossy(b).to_string())
    };
    format!(
        "{} => {}",
        text(message.key(), "-"),
        text(message.payload(), "tombstone")
    )
}

/// The messages of `topic`'s first `partitions` partitions as [`key_value`], in the
/// order read: read until `want` have arrived and then a second has passed without more
/// (so that duplicates show), or a minute has passed.
pub fn read_messages(servers: &str, topic: &str, partitions: i32, want: usize) -> Vec<String> {
    let consumer = consumer_from_start(servers, topic, partitions);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = Instant::now();
    let mut seen = Vec::new();
    while Instant::now() < deadline
        && (seen.len() < want || quiet_since.elapsed() < Duration::from_secs(1))
    {
        // Errors while a broker recovers are retried by the next poll.
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            quiet_since = Instant::now();
            seen.push(key_value(&message));
        }
    }
    seen
}

/// The offsets `group` has committed for `topic`'s first `partitions` partitions.
pub fn committed(servers: &str, group: &str, topic: &str, partitions: i32) -> Vec<Offset> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.offset())
        .collect()
}
