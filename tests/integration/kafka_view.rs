//! A materialized view stored in a Kafka upsert topic, against librdkafka's mock cluster:
//! every upsert is a message keyed by the primary key, and the view read back as a
//! snapshot holds the last message of each key; read as a table with an event time, its
//! messages are versions for a temporal join.

use crate::common;

use common::kafka::{query_with, read_messages};
use profusion::sql::parse_pipeline;
use profusion::stream::SourceReads;
use profusion::{Engine, SessionOptions};
use rdkafka::mocking::MockCluster;

fn view(servers: &str) -> String {
    format!(
        "CREATE MATERIALIZED VIEW profiles PRIMARY KEY (user_id)
         WITH (connector = 'kafka', topic = 'profiles', 'bootstrap.servers' = '{servers}') AS
         SELECT user_id, count(*) AS events, sum(amount) AS spend FROM events GROUP BY user_id"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_in_an_upsert_topic_reads_back_as_the_last_row_per_key() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("profiles", 2, 1).unwrap();
    let servers = cluster.bootstrap_servers();

    // Two batches of a stream: the view upserts the keys each batch changes.
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    let text = format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE)
           WITH (connector = 'memory', 'scan.mode' = 'replay');
         INSERT INTO events VALUES ('u1', 1.0), ('u2', 2.0);
         INSERT INTO events VALUES ('u1', 4.0), ('u3', 8.0);
         {};",
        view(&servers)
    );
    for statement in parse_pipeline(&text).unwrap() {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            engine.collect(&job).await.unwrap();
        }
    }
    let mut messages = read_messages(&servers, "profiles", 2, 4);
    messages.sort();
    assert_eq!(
        messages,
        vec![
            r#"u1 => {"user_id":"u1","events":1,"spend":1.0}"#,
            r#"u1 => {"user_id":"u1","events":2,"spend":5.0}"#,
            r#"u2 => {"user_id":"u2","events":1,"spend":2.0}"#,
            r#"u3 => {"user_id":"u3","events":1,"spend":8.0}"#,
        ]
    );

    // Read as a snapshot (the REPL, --bounded), the view is the last message of each key.
    let rows = query_with(
        SourceReads::Snapshot,
        &format!(
            "CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE) WITH (connector = 'memory');
             {}",
            view(&servers)
        ),
        "SELECT user_id, events, spend FROM profiles",
    )
    .await
    .unwrap();
    let rows: Vec<&str> = rows
        .iter()
        .map(String::as_str)
        .filter(|r| r.starts_with("| u") && !r.starts_with("| user_id"))
        .collect();
    assert_eq!(
        rows,
        [
            "| u1      | 2      | 5.0   |",
            "| u2      | 1      | 2.0   |",
            "| u3      | 1      | 8.0   |",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_kept_in_kafka_is_a_versioned_table_for_temporal_joins() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("tiers", 1, 1).unwrap();
    let servers = cluster.bootstrap_servers();

    // A pipeline keeps each user's tier in a view in Kafka, stamped with its last event.
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    let text = format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
           WITH (connector = 'memory', 'scan.mode' = 'replay');
         INSERT INTO events VALUES ('u1', 1.0, '2026-01-01T00:00:00'), ('u2', 2.0, '2026-01-01T00:01:00');
         INSERT INTO events VALUES ('u1', 4.0, '2026-01-01T00:02:00'), ('u3', 8.0, '2026-01-01T00:03:00');
         CREATE MATERIALIZED VIEW tiers PRIMARY KEY (user_id)
         WITH (connector = 'kafka', topic = 'tiers', 'bootstrap.servers' = '{servers}') AS
         SELECT user_id, CASE WHEN sum(amount) >= 5 THEN 'gold' ELSE 'basic' END AS tier,
                max(ts) AS updated_at
         FROM events GROUP BY user_id;"
    );
    for statement in parse_pipeline(&text).unwrap() {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            engine.collect(&job).await.unwrap();
        }
    }

    // Another reads the topic as versions, each valid from its updated_at.
    let rows = query_with(
        SourceReads::Snapshot,
        &format!(
            "CREATE TABLE tier_versions (user_id TEXT NOT NULL, tier TEXT,
               updated_at TIMESTAMP NOT NULL, WATERMARK FOR updated_at AS updated_at)
             WITH (connector = 'kafka', topic = 'tiers', 'bootstrap.servers' = '{servers}',
                   format = 'json');
             CREATE TABLE orders (order_id TEXT NOT NULL, user_id TEXT NOT NULL,
               ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts)
             WITH (connector = 'memory');
             INSERT INTO orders VALUES ('o1', 'u1', '2026-01-01T00:01:00'),
               ('o2', 'u1', '2026-01-01T00:05:00'), ('o3', 'u2', '2026-01-01T00:00:30'),
               ('o4', 'u3', '2026-01-01T00:04:00')"
        ),
        "SELECT o.order_id, t.tier FROM orders o
         LEFT JOIN tier_versions FOR SYSTEM_TIME AS OF o.ts AS t ON t.user_id = o.user_id",
    )
    .await
    .unwrap();
    let rows: Vec<&str> = rows
        .iter()
        .map(String::as_str)
        .filter(|r| r.starts_with("| o") && !r.starts_with("| order_id"))
        .collect();
    // u1 was basic until its 00:02 event; u2 had no tier before 00:01.
    assert_eq!(
        rows,
        [
            "| o1       | basic |",
            "| o2       | gold  |",
            "| o3       |       |",
            "| o4       | gold  |",
        ]
    );
}
