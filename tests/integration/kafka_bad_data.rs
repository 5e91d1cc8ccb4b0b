//! Bad records in a Kafka table, against librdkafka's mock cluster: every kind is dropped
//! and counted by kind, or written to the dead-letter topic as it was (key, value and
//! headers) with headers saying where it came from and why; headers are readable as
//! metadata columns.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::kafka::query_with;
use common::try_run_pipeline;
use profusion::SessionOptions;
use profusion::stream::SourceReads;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

type Cluster = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// One good record, then one bad record of every kind (the oversize one is over the
/// tables' 200-byte `max_record_bytes`; the future one is stamped far ahead of the clock,
/// beyond `'watermark.max_future'`), then another good one; all in partition 0.
const RECORDS: [(&str, &str); 9] = [
    ("good", r#"{"user_id": "u1", "ts": "2026-01-01T00:00:01Z"}"#),
    ("invalid_json", r#"{"user_id": "u2", "ts": "#),
    ("wrong_type", r#"{"user_id": "u3", "ts": "yesterday"}"#),
    ("missing_value", r#"{"ts": "2026-01-01T00:00:02Z"}"#),
    ("empty", ""),
    (
        "not_one_object",
        r#"{"user_id": "a", "ts": "2026-01-01T00:00:03Z"} {"user_id": "b"}"#,
    ),
    ("oversize", ""),
    (
        "future_event_time",
        r#"{"user_id": "u8", "ts": "2100-01-01T00:00:00Z"}"#,
    ),
    ("good", r#"{"user_id": "u9", "ts": "2026-01-01T00:00:09Z"}"#),
];

fn produce_records(cluster: &Cluster) {
    cluster.create_topic("events", 1, 1).unwrap();
    cluster.create_topic("events_dlq", 1, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    let oversize = format!(
        r#"{{"user_id": "{}", "ts": "2026-01-01T00:00:04Z"}}"#,
        "x".repeat(300)
    );
    for (n, (kind, value)) in RECORDS.iter().enumerate() {
        let value = if *kind == "oversize" {
            oversize.as_str()
        } else {
            value
        };
        let key = format!("key-{kind}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some(&format!("t{n}")),
        });
        producer
            .send(
                BaseRecord::<str, str>::to("events")
                    .partition(0)
                    .key(&key)
                    .headers(headers)
                    .payload(value),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

fn pipeline(servers: &str, bad_data: &str) -> String {
    format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts)
         WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{servers}',
               max_record_bytes = 200, {bad_data});
         CREATE TABLE out (user_id TEXT, ts TIMESTAMP) WITH (connector = 'blackhole');
         INSERT INTO out SELECT * FROM events;"
    )
}

fn bounded() -> SessionOptions {
    SessionOptions {
        reads: SourceReads::Snapshot,
        ..SessionOptions::default()
    }
}

fn every_bad_kind() -> BTreeMap<String, u64> {
    RECORDS
        .iter()
        .filter(|(kind, _)| *kind != "good")
        .map(|(kind, _)| (kind.to_string(), 1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_skips_every_kind_of_bad_record_and_counts_it_by_kind() {
    let cluster = MockCluster::new(1).unwrap();
    produce_records(&cluster);
    let servers = cluster.bootstrap_servers();
    let summary = try_run_pipeline(&pipeline(&servers, "bad_data = 'drop'"), &bounded())
        .await
        .unwrap();
    assert_eq!(summary.rows_out, 2);
    assert_eq!(summary.bad_records, every_bad_kind());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_stops_at_the_first_bad_record_with_its_position() {
    let cluster = MockCluster::new(1).unwrap();
    produce_records(&cluster);
    let servers = cluster.bootstrap_servers();
    let failed = try_run_pipeline(&pipeline(&servers, "bad_data = 'fail'"), &bounded())
        .await
        .unwrap_err();
    assert!(
        failed.contains("bad record in topic events, partition 0, offset 1:"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_writes_each_bad_record_as_it_was_with_where_and_why() {
    let cluster = MockCluster::new(1).unwrap();
    produce_records(&cluster);
    let servers = cluster.bootstrap_servers();
    let summary = try_run_pipeline(
        &pipeline(&servers, "bad_data = 'dlq', 'dlq.topic' = 'events_dlq'"),
        &bounded(),
    )
    .await
    .unwrap();
    assert_eq!(summary.rows_out, 2);
    assert_eq!(summary.bad_records, every_bad_kind());

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("group.id", "dlq-reader")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("events_dlq", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut dead = Vec::new();
    while dead.len() < 7 {
        let message = consumer
            .poll(Duration::from_secs(10))
            .expect("a dead letter within 10 s")
            .unwrap();
        let headers: BTreeMap<String, String> = message
            .headers()
            .unwrap()
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value.unwrap_or_default()).to_string();
                (h.key.to_string(), value)
            })
            .collect();
        dead.push((
            String::from_utf8_lossy(message.key().unwrap()).to_string(),
            message.payload().map(<[u8]>::len).unwrap_or(0),
            headers,
        ));
    }
    for (offset, (key, value_len, headers)) in (1..=7).zip(&dead) {
        let (kind, value) = RECORDS[offset];
        assert_eq!(key, &format!("key-{kind}"));
        if kind != "oversize" {
            assert_eq!(*value_len, value.len(), "{kind}: the value as it was");
        }
        assert_eq!(
            headers["trace"],
            format!("t{offset}"),
            "its own headers kept"
        );
        assert_eq!(headers["dlq.source.topic"], "events");
        assert_eq!(headers["dlq.source.partition"], "0");
        assert_eq!(headers["dlq.source.offset"], offset.to_string());
        assert_eq!(headers["dlq.error.kind"], kind);
        assert!(!headers["dlq.error"].is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_metadata_columns() {
    let cluster = MockCluster::new(1).unwrap();
    produce_records(&cluster);
    let servers = cluster.bootstrap_servers();
    let rows = query_with(
        SourceReads::Snapshot,
        &format!(
            "CREATE TABLE events (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL,
               trace TEXT METADATA FROM 'header.trace', all_headers TEXT METADATA FROM 'headers')
             WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{servers}',
                   bad_data = 'drop')"
        ),
        "SELECT trace, all_headers FROM events WHERE user_id = 'u9'",
    )
    .await
    .unwrap();
    assert!(
        rows.contains(&r#"| t8    | {"trace":"t8"} |"#.to_string()),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_a_json_schema_rejects_are_schema_violations() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("checked", 1, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    for value in [
        r#"{"user_id": "u1", "amount": 5, "ts": "2026-01-01T00:00:01Z"}"#,
        r#"{"user_id": "u2", "amount": -5, "ts": "2026-01-01T00:00:02Z"}"#,
        r#"{"user_id": "", "amount": 1, "ts": "2026-01-01T00:00:03Z"}"#,
    ] {
        producer
            .send(
                BaseRecord::<(), str>::to("checked")
                    .partition(0)
                    .payload(value),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("event.schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "required": ["user_id", "ts"],
            "properties": {"user_id": {"type": "string", "minLength": 1},
                           "amount": {"type": "number", "minimum": 0}}}"#,
    )
    .unwrap();
    let servers = cluster.bootstrap_servers();
    let summary = try_run_pipeline(
        &format!(
            "CREATE TABLE checked (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
             WITH (connector = 'kafka', topic = 'checked', 'bootstrap.servers' = '{servers}',
                   'json.schema' = '{}', bad_data = 'drop');
             CREATE TABLE out (user_id TEXT, amount DOUBLE, ts TIMESTAMP) WITH (connector = 'blackhole');
             INSERT INTO out SELECT * FROM checked;",
            schema.display()
        ),
        &bounded(),
    )
    .await
    .unwrap();
    assert_eq!(summary.rows_out, 1);
    assert_eq!(
        summary.bad_records,
        BTreeMap::from([("schema_violation".to_string(), 2)])
    );
}
