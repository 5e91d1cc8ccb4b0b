//! Avro Kafka tables with a Confluent schema registry (a small one on 127.0.0.1, in the
//! test) and librdkafka's mock cluster: a sink registers its schema and writes the wire
//! format (magic byte 0, 4-byte schema id, body); a source fetches each writer schema once
//! and decodes rows; bad records of the Avro kinds are counted or dead-lettered.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_avro::schema::{FingerprintStrategy, SCHEMA_METADATA_KEY};
use arrow_avro::writer::WriterBuilder;
use arrow_avro::writer::format::AvroSoeFormat;
use common::kafka::{produce_events, query_with};
use common::registry::TestRegistry;
use common::try_run_pipeline;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use profusion::SessionOptions;
use profusion::stream::SourceReads;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

type Cluster = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

fn bounded() -> SessionOptions {
    SessionOptions {
        reads: SourceReads::Snapshot,
        ..SessionOptions::default()
    }
}

/// Copies the JSON topic `events` into the Avro topic `avro_events` through a pipeline.
async fn write_avro(cluster: &Cluster, registry: &TestRegistry) {
    produce_events(
        cluster,
        "events",
        &[
            (0, "u1", 1.5, "00:00:10"),
            (1, "u2", 2.0, "00:01:10"),
            (0, "u1", 4.0, "00:02:30"),
        ],
    );
    cluster.create_topic("avro_events", 2, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    let registry = &registry.url;
    try_run_pipeline(
        &format!(
            "CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
             WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{servers}');
             CREATE TABLE avro_events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
             WITH (connector = 'kafka', topic = 'avro_events', 'bootstrap.servers' = '{servers}',
                   format = 'avro', 'schema.registry.url' = '{registry}', 'key.fields' = 'user_id');
             INSERT INTO avro_events SELECT * FROM events;"
        ),
        &bounded(),
    )
    .await
    .unwrap();
}

fn avro_table(servers: &str, registry: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE avro_events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
         WITH (connector = 'kafka', topic = 'avro_events', 'bootstrap.servers' = '{servers}',
               format = 'avro', 'schema.registry.url' = '{registry}'{extra})"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_registers_its_schema_and_a_source_reads_the_rows_back() {
    let cluster = MockCluster::new(1).unwrap();
    let registry = TestRegistry::start().await;
    write_avro(&cluster, &registry).await;
    assert_eq!(registry.versions("avro_events-value"), vec![1]);

    let rows = query_with(
        SourceReads::Snapshot,
        &avro_table(&cluster.bootstrap_servers(), &registry.url, ""),
        "SELECT user_id, amount, ts FROM avro_events",
    )
    .await
    .unwrap();
    let data: Vec<&String> = rows.iter().filter(|r| r.contains("2026")).collect();
    assert_eq!(
        data,
        vec![
            "| u1      | 1.5    | 2026-01-01T00:00:10 |",
            "| u1      | 4.0    | 2026-01-01T00:02:30 |",
            "| u2      | 2.0    | 2026-01-01T00:01:10 |",
        ]
    );
    // Two partitions read at once, one schema id: fetched once.
    assert_eq!(registry.requests("/schemas/ids/1"), 1);
}

/// An Avro message of `schema` (registered as `id`) holding `user_id` and, as a string,
/// `amount`: the wrong type for the table's DOUBLE column.
fn wrongly_typed(id: u32, avro_json: &str) -> Vec<u8> {
    let mut metadata = std::collections::HashMap::new();
    metadata.insert(SCHEMA_METADATA_KEY.to_string(), avro_json.to_string());
    let schema = Schema::new_with_metadata(
        vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("amount", DataType::Utf8, false),
            Field::new("ts", DataType::Utf8, false),
        ],
        metadata,
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema.clone()),
        vec![
            Arc::new(StringArray::from(vec!["u9"])),
            Arc::new(StringArray::from(vec!["lots"])),
            Arc::new(StringArray::from(vec!["2026-01-01T00:00:00"])),
        ],
    )
    .unwrap();
    let mut encoder = WriterBuilder::new(schema)
        .with_fingerprint_strategy(FingerprintStrategy::Id(id))
        .build_encoder::<AvroSoeFormat>()
        .unwrap();
    encoder.encode(&batch).unwrap();
    encoder.flush().bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_avro_records_are_counted_by_kind_or_dead_lettered() {
    let cluster = MockCluster::new(1).unwrap();
    let registry = TestRegistry::start().await;
    write_avro(&cluster, &registry).await;
    let strings = r#"{"type":"record","name":"Strings","fields":[{"name":"user_id","type":"string"},{"name":"amount","type":"string"},{"name":"ts","type":"string"}]}"#;
    let strings_id = registry.register("other-value", strings);
    let mut truncated = wrongly_typed(strings_id, strings);
    truncated.truncate(truncated.len() - 3);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("short_avro_header", vec![0, 0, 1]),
        ("wrong_magic_byte", vec![1, 0, 0, 0, 1, 2, 3]),
        ("unknown_schema_id", vec![0, 0, 0, 3, 231, 2, 3]),
        ("invalid_avro", truncated),
        ("wrong_type", wrongly_typed(strings_id, strings)),
        ("oversize", [vec![0, 0, 0, 0, 1], vec![7; 300]].concat()),
    ];
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    for (_, value) in &bad {
        producer
            .send(
                BaseRecord::<(), [u8]>::to("avro_events")
                    .partition(1)
                    .payload(value),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    cluster.create_topic("avro_dlq", 1, 1).unwrap();

    let servers = cluster.bootstrap_servers();
    let summary = try_run_pipeline(
        &format!(
            "{};
             CREATE TABLE out (user_id TEXT, amount DOUBLE, ts TIMESTAMP) WITH (connector = 'blackhole');
             INSERT INTO out SELECT * FROM avro_events;",
            avro_table(
                &servers,
                &registry.url,
                ", bad_data = 'dlq', 'dlq.topic' = 'avro_dlq', max_record_bytes = 200"
            )
        ),
        &bounded(),
    )
    .await
    .unwrap();
    assert_eq!(summary.rows_out, 3, "the good rows");
    let expected: BTreeMap<String, u64> =
        bad.iter().map(|(kind, _)| (kind.to_string(), 1)).collect();
    assert_eq!(summary.bad_records, expected);

    // With fail, the first bad record stops the pipeline, naming it.
    let failed = try_run_pipeline(
        &format!(
            "{};
             CREATE TABLE out (user_id TEXT, amount DOUBLE, ts TIMESTAMP) WITH (connector = 'blackhole');
             INSERT INTO out SELECT * FROM avro_events;",
            avro_table(&servers, &registry.url, "")
        ),
        &bounded(),
    )
    .await
    .unwrap_err();
    assert!(
        failed.contains("bad record in topic avro_events, partition 1, offset")
            && failed.contains("5-byte"),
        "{failed}"
    );
}
