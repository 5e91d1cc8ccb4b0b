//! Debezium change events as a changelog, against librdkafka's mock cluster: each event a
//! row with its change kind (`METADATA FROM 'op'`), deletes carrying the row before; an
//! upsert sink keyed by the primary key writes deletes as tombstones; a temporal join reads
//! the changelog, or an upsert topic whose tombstones are deletes, as versions, each valid
//! from its change's time, a delete ending them.

use crate::common;

use std::time::Duration;

use common::kafka::{query_with, read_messages};
use common::try_run_pipeline;
use profusion::SessionOptions;
use profusion::stream::SourceReads;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

type Cluster = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

const EVENTS: [Option<&str>; 7] = [
    Some(r#"{"before": null, "after": {"id": "1", "name": "ann"}, "op": "c", "ts_ms": 1}"#),
    Some(r#"{"before": null, "after": {"id": "2", "name": "bob"}, "op": "c", "ts_ms": 2}"#),
    Some(
        r#"{"before": {"id": "1", "name": "ann"}, "after": {"id": "1", "name": "anna"}, "op": "u"}"#,
    ),
    Some(r#"{"before": {"id": "2", "name": "bob"}, "after": null, "op": "d"}"#),
    // Debezium follows a delete with a tombstone: no row.
    None,
    Some(r#"{"schema": {}, "payload": {"after": {"id": "3", "name": "cy"}, "op": "r"}}"#),
    // Not a row change.
    Some(r#"{"after": {"id": "4", "name": "dee"}}"#),
];

fn produce_events(cluster: &Cluster) {
    cluster.create_topic("users_cdc", 1, 1).unwrap();
    cluster.create_topic("users", 1, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    for event in EVENTS {
        let mut record = BaseRecord::<str, str>::to("users_cdc")
            .partition(0)
            .key("k");
        if let Some(value) = event {
            record = record.payload(value);
        }
        producer.send(record).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

fn cdc_table(servers: &str) -> String {
    format!(
        "CREATE TABLE users_cdc (id TEXT NOT NULL, name TEXT, op TEXT METADATA FROM 'op')
         WITH (connector = 'kafka', topic = 'users_cdc', 'bootstrap.servers' = '{servers}',
               format = 'debezium-json', bad_data = 'drop')"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_is_a_row_with_its_kind() {
    let cluster = MockCluster::new(1).unwrap();
    produce_events(&cluster);
    let rows = query_with(
        SourceReads::Snapshot,
        &cdc_table(&cluster.bootstrap_servers()),
        "SELECT id, name, op FROM users_cdc",
    )
    .await
    .unwrap();
    let data: Vec<&String> = rows
        .iter()
        .filter(|r| r.starts_with("| ") && !r.contains(" op "))
        .collect();
    assert_eq!(
        data,
        vec![
            "| 1  | ann  | c  |",
            "| 1  | anna | u  |",
            "| 2  | bob  | c  |",
            "| 2  | bob  | d  |",
            "| 3  | cy   | r  |",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_sink_writes_deletes_as_tombstones() {
    let cluster = MockCluster::new(1).unwrap();
    produce_events(&cluster);
    let servers = cluster.bootstrap_servers();
    let summary = try_run_pipeline(
        &format!(
            "{};
             CREATE TABLE users (id TEXT NOT NULL, name TEXT, op TEXT METADATA FROM 'op', PRIMARY KEY (id))
             WITH (connector = 'kafka', topic = 'users', 'bootstrap.servers' = '{servers}');
             INSERT INTO users SELECT id, name, op FROM users_cdc;",
            cdc_table(&servers)
        ),
        &SessionOptions {
            reads: SourceReads::Snapshot,
            ..SessionOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.bad_records.get("invalid_change"), Some(&1));

    let written = read_messages(&servers, "users", 1, 5);
    assert_eq!(
        written,
        vec![
            r#"1 => {"id":"1","name":"ann"}"#,
            r#"2 => {"id":"2","name":"bob"}"#,
            r#"1 => {"id":"1","name":"anna"}"#,
            "2 => tombstone",
            r#"3 => {"id":"3","name":"cy"}"#,
        ]
    );
}

/// A CRM's plans as Debezium change events, each stamped with the time of its change (the
/// Kafka timestamp, in milliseconds from 2026-01-01T00:00:00Z).
const PLAN_CHANGES: [(Option<&str>, i64); 4] = [
    (
        Some(r#"{"before": null, "after": {"id": "u1", "plan": "free"}, "op": "c"}"#),
        0,
    ),
    (
        Some(
            r#"{"before": {"id": "u1", "plan": "free"}, "after": {"id": "u1", "plan": "pro"}, "op": "u"}"#,
        ),
        60_000,
    ),
    (
        Some(r#"{"before": {"id": "u1", "plan": "pro"}, "after": null, "op": "d"}"#),
        120_000,
    ),
    (
        Some(r#"{"before": null, "after": {"id": "u1", "plan": "team"}, "op": "c"}"#),
        180_000,
    ),
];

/// The same changes in an upsert topic: each message the row, a delete a tombstone.
const PLAN_UPSERTS: [(Option<&str>, i64); 4] = [
    (Some(r#"{"id": "u1", "plan": "free"}"#), 0),
    (Some(r#"{"id": "u1", "plan": "pro"}"#), 60_000),
    (None, 120_000),
    (Some(r#"{"id": "u1", "plan": "team"}"#), 180_000),
];

/// The plan of user u1 at each of four clicks, half a minute into minutes 0 to 3, read
/// through a temporal join from `changes` (keyed by u1) in a table of `format` with `key`.
async fn plans_at_clicks(
    changes: [(Option<&str>, i64); 4],
    format: &str,
    key: &str,
) -> Vec<String> {
    const START_MS: i64 = 1_767_225_600_000;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("plans", 1, 1).unwrap();
    cluster.create_topic("clicks", 1, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .unwrap();
    for (value, at) in changes {
        let mut record = BaseRecord::<str, str>::to("plans")
            .partition(0)
            .key("u1")
            .timestamp(START_MS + at);
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer.send(record).unwrap();
    }
    for (click, at) in [
        ("c1", "00:00:30"),
        ("c2", "00:01:30"),
        ("c3", "00:02:30"),
        ("c4", "00:03:30"),
    ] {
        let value =
            format!(r#"{{"click_id": "{click}", "user_id": "u1", "ts": "2026-01-01T{at}Z"}}"#);
        let record = BaseRecord::<str, str>::to("clicks")
            .partition(0)
            .payload(&value);
        producer.send(record).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let rows = query_with(
        SourceReads::Snapshot,
        &format!(
            "CREATE TABLE plans (id TEXT NOT NULL, plan TEXT, op TEXT METADATA FROM 'op',
               changed_at TIMESTAMP NOT NULL METADATA FROM 'timestamp',
               WATERMARK FOR changed_at AS changed_at{key})
             WITH (connector = 'kafka', topic = 'plans', 'bootstrap.servers' = '{servers}',
                   format = '{format}');
             CREATE TABLE clicks (click_id TEXT NOT NULL, user_id TEXT NOT NULL,
               ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts)
             WITH (connector = 'kafka', topic = 'clicks', 'bootstrap.servers' = '{servers}',
                   format = 'json')"
        ),
        "SELECT c.click_id, p.plan FROM clicks c
         LEFT JOIN plans FOR SYSTEM_TIME AS OF c.ts AS p ON p.id = c.user_id",
    )
    .await
    .unwrap();
    rows.into_iter()
        .filter(|r| r.starts_with("| c") && !r.contains("click_id"))
        .collect()
}

/// Free, then pro; deleted at minute 2 (no plan), then a new row on team.
const PLANS_AT_CLICKS: [&str; 4] = [
    "| c1       | free |",
    "| c2       | pro  |",
    "| c3       |      |",
    "| c4       | team |",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporal_join_reads_a_changelog_as_versions_and_deletes_end_them() {
    let rows = plans_at_clicks(PLAN_CHANGES, "debezium-json", "").await;
    assert_eq!(rows, PLANS_AT_CLICKS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporal_join_reads_an_upsert_topic_as_versions_and_tombstones_end_them() {
    let rows = plans_at_clicks(PLAN_UPSERTS, "json", ", PRIMARY KEY (id)").await;
    assert_eq!(rows, PLANS_AT_CLICKS);
}
