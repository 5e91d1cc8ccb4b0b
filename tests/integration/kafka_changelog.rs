//! Debezium change events as a changelog, against librdkafka's mock cluster: each event a
//! row with its change kind (`METADATA FROM 'op'`), deletes carrying the row before; an
//! upsert sink keyed by the primary key writes deletes as tombstones.

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
