//! `INSERT INTO` a Kafka table, against librdkafka's mock cluster: window results written
//! as JSON messages keyed by the key columns and read back as a table; a message that
//! cannot be delivered fails the pipeline with the cause.

use crate::common;

use common::kafka::{produce_events, query_with, read_messages};
use common::try_run_pipeline;
use profusion::SessionOptions;
use profusion::stream::SourceReads;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

fn bounded() -> SessionOptions {
    SessionOptions {
        reads: SourceReads::Snapshot,
        ..SessionOptions::default()
    }
}

fn pipeline(servers: &str, sink_options: &str) -> String {
    format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL,
           WATERMARK FOR ts AS ts)
         WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{servers}');
         CREATE TABLE activity (user_id TEXT, window_start TIMESTAMP, events BIGINT, spend DOUBLE)
         WITH (connector = 'kafka', topic = 'activity', 'bootstrap.servers' = '{servers}'{sink_options});
         INSERT INTO activity
         SELECT user_id, window_start, count(*), sum(amount)
         FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
         GROUP BY user_id, window_start, window_end;"
    )
}

fn events(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) {
    produce_events(
        cluster,
        "events",
        &[
            (0, "u1", 1.0, "00:00:10"),
            (0, "u2", 2.0, "00:01:10"),
            (1, "u1", 8.0, "00:00:20"),
            (1, "u3", 16.0, "00:01:20"),
        ],
    );
}

/// The messages of `topic`, sorted (see [`read_messages`]).
fn messages(servers: &str, topic: &str, partitions: i32, want: usize) -> Vec<String> {
    let mut seen = read_messages(servers, topic, partitions, want);
    seen.sort();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_results_are_written_as_keyed_json_messages() {
    let cluster = MockCluster::new(1).unwrap();
    events(&cluster);
    cluster.create_topic("activity", 2, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    let summary = try_run_pipeline(
        &pipeline(&servers, ", 'key.fields' = 'user_id'"),
        &bounded(),
    )
    .await
    .unwrap();
    assert_eq!(summary.rows_out, 3);
    assert_eq!(
        messages(&servers, "activity", 2, 3),
        vec![
            r#"u1 => {"user_id":"u1","window_start":"2026-01-01T00:00:00","events":2,"spend":9.0}"#,
            r#"u2 => {"user_id":"u2","window_start":"2026-01-01T00:01:00","events":1,"spend":2.0}"#,
            r#"u3 => {"user_id":"u3","window_start":"2026-01-01T00:01:00","events":1,"spend":16.0}"#,
        ]
    );
    // What was written reads back as a table.
    let rows = query_with(
        SourceReads::Snapshot,
        &format!(
            "CREATE TABLE activity (user_id TEXT, window_start TIMESTAMP, events BIGINT, spend DOUBLE)
             WITH (connector = 'kafka', topic = 'activity', 'bootstrap.servers' = '{servers}')"
        ),
        "SELECT user_id, events, spend FROM activity",
    )
    .await
    .unwrap();
    assert!(
        rows.contains(&"| u1      | 2      | 9.0   |".to_string()),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_key_is_the_message_key() {
    let cluster = MockCluster::new(1).unwrap();
    events(&cluster);
    cluster.create_topic("latest", 1, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    let text = format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL,
           WATERMARK FOR ts AS ts)
         WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{servers}');
         CREATE TABLE latest (user_id TEXT NOT NULL, amount DOUBLE, PRIMARY KEY (user_id))
         WITH (connector = 'kafka', topic = 'latest', 'bootstrap.servers' = '{servers}');
         INSERT INTO latest SELECT user_id, amount FROM events WHERE amount > 4;"
    );
    try_run_pipeline(&text, &bounded()).await.unwrap();
    assert_eq!(
        messages(&servers, "latest", 1, 2),
        vec![
            r#"u1 => {"user_id":"u1","amount":8.0}"#,
            r#"u3 => {"user_id":"u3","amount":16.0}"#,
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_message_fails_the_pipeline_with_the_cause() {
    let cluster = MockCluster::new(1).unwrap();
    events(&cluster);
    cluster.create_topic("activity", 2, 1).unwrap();
    // Not retriable: librdkafka gives up on the message at once.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 16],
    );
    let servers = cluster.bootstrap_servers();
    let failed = try_run_pipeline(&pipeline(&servers, ""), &bounded())
        .await
        .unwrap_err();
    assert!(failed.contains("writing to topic activity"), "{failed}");
    assert!(failed.contains("authoriz"), "{failed}");
}
