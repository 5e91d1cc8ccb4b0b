//! Kafka tables against a broker in its own process (tansu, which `scripts/test` installs
//! and starts on 127.0.0.1, setting `PROFUSION_TEST_KAFKA`): seeded events produced to a
//! three-partition topic, aggregated by a running pipeline through `TUMBLE` into another
//! topic as Avro (schemas in a registry run by the test), equal the same aggregation
//! computed by plain batch DataFusion over the same events.
//!
//! Topics are read continuously, not as snapshots: tansu 0.6.0 answers a query for a
//! partition's end offset with the first offset of its last record batch (a partition
//! holding offsets 0 to 6666 said 5278), so a snapshot of it would stop early. Instead, each
//! partition ends with a sentinel event an hour later, which closes every window of the
//! data, and the output is read until it holds as many rows as the batch result.

use std::sync::Arc;
use std::time::Duration;

use crate::common;

use common::kafka::{create_topics, send, test_broker, unique};
use common::registry::TestRegistry;
use common::{batch_over_json, lines, run_pipeline};
use profusion::sql::{parse_pipeline, substitute_variables};
use profusion::{Engine, Pipeline, SessionOptions};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const COLUMNS: &str = "user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tumble_over_a_topic_equals_the_batch_result() {
    let Some(servers) = test_broker() else { return };
    let nanos = unique("run");
    let topic = format!("events-{nanos}");
    create_topics(&servers, &[(&topic, 3)]).await;

    // The input: seeded events, a few seconds out of order, as JSON lines.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let path = path.to_str().unwrap();
    run_pipeline(&format!(
        "CREATE TABLE generated ({COLUMNS}) WITH (connector = 'datagen', count = 20000,
           users = 50, seed = 11, out_of_order = '2s', step = '10ms');
         CREATE TABLE out ({COLUMNS}) WITH (connector = 'file', path = '{path}', format = 'json');
         INSERT INTO out SELECT * FROM generated;"
    ))
    .await;
    let text = std::fs::read_to_string(path).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .unwrap();
    for (i, line) in text.lines().enumerate() {
        send(&producer, &topic, (i % 3) as i32, line);
    }
    let sentinel = r#"{"user_id": "sentinel", "amount": 0, "ts": "2026-01-01T05:00:00Z"}"#;
    for partition in 0..3 {
        producer
            .send(
                BaseRecord::<(), str>::to(&topic)
                    .partition(partition)
                    .payload(sentinel),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let expected = batch(path).await;
    assert!(expected.len() > 100, "many windows: {}", expected.len());

    let activity = format!("activity-{nanos}");
    create_topics(&servers, &[(&activity, 3)]).await;
    let registry = TestRegistry::start().await;
    let avro = format!(
        "format = 'avro', 'schema.registry.url' = '{}'",
        registry.url
    );
    let pipeline = Pipeline::load(
        &format!(
            "CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
               WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{servers}',
                     'group.id' = 'activity-{nanos}');
             CREATE TABLE activity (user_id TEXT, window_start TIMESTAMP, events BIGINT, spend DOUBLE)
               WITH (connector = 'kafka', topic = '{activity}', 'bootstrap.servers' = '{servers}',
                     'key.fields' = 'user_id', {avro});
             INSERT INTO activity
             SELECT user_id, window_start, count(*), sum(amount)
               FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
               GROUP BY user_id, window_start, window_end;"
        ),
        &SessionOptions::default(),
    )
    .await
    .unwrap();
    let stop = Arc::clone(pipeline.engine().shared());
    let mut running = tokio::spawn(pipeline.run());

    let reader = Engine::new(&SessionOptions::default()).unwrap();
    let read_back = format!(
        "CREATE TABLE activity (user_id TEXT, window_start TIMESTAMP, events BIGINT, spend DOUBLE)
           WITH (connector = 'kafka', topic = '{activity}', 'bootstrap.servers' = '{servers}', {avro});
         SELECT * FROM activity LIMIT {};",
        expected.len()
    );
    let read = async {
        let mut streamed = Vec::new();
        for statement in parse_pipeline(&read_back).unwrap() {
            if let Some(job) = reader.submit(statement).await.unwrap() {
                streamed = lines(&reader.collect(&job).await.unwrap());
            }
        }
        streamed
    };
    let streamed = tokio::select! {
        streamed = read => streamed,
        ended = &mut running => panic!("the pipeline ended before its output was complete: {ended:?}"),
    };
    stop.stop.stop();
    let summary = running.await.unwrap().unwrap();
    assert!(summary.stopped);

    assert_eq!(streamed.len(), expected.len());
    assert_eq!(streamed, expected);
    assert_eq!(registry.versions(&format!("{activity}-value")), vec![1]);
}

/// The per-user one-minute aggregation of the JSON lines at `path`, in plain DataFusion.
async fn batch(path: &str) -> Vec<String> {
    batch_over_json(
        COLUMNS,
        path,
        "SELECT user_id, date_bin(INTERVAL '1' MINUTE, ts) AS window_start, count(*), sum(amount)
         FROM events GROUP BY user_id, date_bin(INTERVAL '1' MINUTE, ts)",
    )
    .await
}

/// Debezium change events through the broker into an upsert topic: deletes become
/// tombstones, and events a JSON Schema rejects are dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_becomes_an_upsert_topic_with_tombstones() {
    let Some(servers) = test_broker() else { return };
    let nanos = unique("run");
    let (cdc, users, dlq) = (
        format!("cdc-{nanos}"),
        format!("users-{nanos}"),
        format!("cdc-dlq-{nanos}"),
    );
    create_topics(&servers, &[(&cdc, 1), (&users, 1), (&dlq, 1)]).await;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .unwrap();
    for event in [
        r#"{"after": {"id": "1", "name": "ann"}, "op": "c"}"#,
        r#"{"after": {"id": "2", "name": "bob"}, "op": "c"}"#,
        r#"{"after": {"id": "1", "name": ""}, "op": "u"}"#,
        r#"{"before": {"id": "2", "name": "bob"}, "op": "d"}"#,
    ] {
        producer
            .send(BaseRecord::<(), str>::to(&cdc).payload(event))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("user.schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"name": {"type": "string", "minLength": 1}}}"#,
    )
    .unwrap();

    let pipeline = Pipeline::load(
        &format!(
            "CREATE TABLE cdc (id TEXT NOT NULL, name TEXT, op TEXT METADATA FROM 'op')
               WITH (connector = 'kafka', topic = '{cdc}', 'bootstrap.servers' = '{servers}',
                     format = 'debezium-json', 'json.schema' = '{}',
                     bad_data = 'dlq', 'dlq.topic' = '{dlq}');
             CREATE TABLE users (id TEXT NOT NULL, name TEXT, op TEXT METADATA FROM 'op',
                                 PRIMARY KEY (id))
               WITH (connector = 'kafka', topic = '{users}', 'bootstrap.servers' = '{servers}');
             INSERT INTO users SELECT * FROM cdc;",
            schema.display()
        ),
        &SessionOptions::default(),
    )
    .await
    .unwrap();
    let stop = Arc::clone(pipeline.engine().shared());
    let running = tokio::spawn(pipeline.run());
    let written = read_messages(&servers, &users, 3).await;
    let dead = read_messages(&servers, &dlq, 1).await;
    stop.stop.stop();
    running.await.unwrap().unwrap();
    assert_eq!(
        written,
        vec![
            r#"1 => {"id":"1","name":"ann"}"#,
            r#"2 => {"id":"2","name":"bob"}"#,
            "2 => tombstone",
        ]
    );
    assert_eq!(
        dead,
        vec![r#"- => {"after": {"id": "1", "name": ""}, "op": "u"}"#]
    );
}

/// The messages of partition 0 of `topic` (see [`common::kafka::read_messages`]).
async fn read_messages(servers: &str, topic: &str, count: usize) -> Vec<String> {
    let (servers, topic) = (servers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || common::kafka::read_messages(&servers, &topic, 1, count))
        .await
        .unwrap()
}

/// The Kafka examples in `sql/`, as written, against the broker: one fills the events
/// topic, the other turns it into activity windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_examples_run_as_written() {
    let Some(servers) = test_broker() else { return };
    let nanos = unique("run");
    let variables = std::collections::HashMap::from([
        ("KAFKA_BOOTSTRAP", servers.clone()),
        ("EVENTS", "20000".to_string()),
        ("EVENTS_TOPIC", format!("events-{nanos}")),
        ("ACTIVITY_TOPIC", format!("activity-{nanos}")),
        ("DLQ_TOPIC", format!("dlq-{nanos}")),
        ("KAFKA_GROUP", format!("onboarding-{nanos}")),
    ]);
    create_topics(
        &servers,
        &[
            (&variables["EVENTS_TOPIC"], 3),
            (&variables["ACTIVITY_TOPIC"], 1),
            (&variables["DLQ_TOPIC"], 1),
        ],
    )
    .await;
    let example = |name: &str| {
        let text = std::fs::read_to_string(format!("sql/{name}")).unwrap();
        substitute_variables(&text, |v| variables.get(v).cloned()).unwrap()
    };

    let produced =
        common::try_run_pipeline(&example("kafka_events.sql"), &SessionOptions::default())
            .await
            .unwrap();
    assert_eq!(produced.rows_out, 20_000);

    let pipeline = Pipeline::load(&example("onboarding_kafka.sql"), &SessionOptions::default())
        .await
        .unwrap();
    let stop = Arc::clone(pipeline.engine().shared());
    let running = tokio::spawn(pipeline.run());
    // 200 seconds of events for 6 users: the first two minutes' windows are closed.
    let windows = read_messages(&servers, &variables["ACTIVITY_TOPIC"], 12).await;
    stop.stop.stop();
    running.await.unwrap().unwrap();
    for window in &windows {
        let (user, value) = window.split_once(" => ").unwrap();
        let value: serde_json::Value = serde_json::from_str(value).unwrap();
        assert_eq!(value["user_id"], user);
        assert!(value["events"].as_i64().unwrap() > 0, "{window}");
    }
}
