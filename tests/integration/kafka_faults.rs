//! A running Kafka -> TUMBLE -> Kafka pipeline under librdkafka's mock-cluster fault
//! injection: the broker down for 10 seconds, and errors injected into produce, fetch and
//! offset-commit requests. Each time the pipeline resumes by itself, the output holds every
//! window exactly once, and the group's offsets are committed.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::kafka::{committed, event, read_messages};
use profusion::{Pipeline, RunSummary, SessionOptions};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset};
use tokio::task::JoinHandle;

type Cluster = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// Events every 5 seconds for 20 minutes, four users in turn, over two partitions.
const EVENTS: usize = 240;
const USERS: usize = 4;

fn producer(cluster: &Cluster) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap()
}

/// Sends events `range` (and, after the last, a sentinel an hour later on each partition
/// that closes every window), without waiting for delivery.
fn send_events(producer: &BaseProducer, range: std::ops::Range<usize>) {
    let last = range.end == EVENTS;
    for i in range {
        let seconds = i * 5;
        let value = event(
            &format!("u{}", i % USERS),
            1.0,
            &format!("00:{:02}:{:02}", seconds / 60, seconds % 60),
        );
        let record = BaseRecord::<(), str>::to("events")
            .partition((i % 2) as i32)
            .payload(&value);
        producer.send(record).unwrap();
    }
    if last {
        let sentinel = r#"{"user_id": "sentinel", "amount": 0, "ts": "2026-01-01T02:00:00Z"}"#;
        for partition in 0..2 {
            let record = BaseRecord::<(), str>::to("events")
                .partition(partition)
                .payload(sentinel);
            producer.send(record).unwrap();
        }
    }
}

/// Every window's message, as the pipeline writes it.
fn expected() -> Vec<String> {
    let mut counts: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for i in 0..EVENTS {
        *counts.entry((i % USERS, i * 5 / 60)).or_default() += 1;
    }
    let mut expected: Vec<String> = counts
        .iter()
        .map(|((user, minute), n)| {
            format!(
                r#"u{user} => {{"user_id":"u{user}","window_start":"2026-01-01T00:{minute:02}:00","events":{n}}}"#
            )
        })
        .collect();
    expected.sort();
    expected
}

/// Starts the pipeline: events, by user and minute, into the `activity` topic.
async fn start(
    cluster: &Cluster,
) -> (
    Arc<profusion::stream::PipelineContext>,
    JoinHandle<profusion::Result<RunSummary>>,
) {
    let servers = cluster.bootstrap_servers();
    let text = format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL,
           WATERMARK FOR ts AS ts)
         WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{servers}',
               'group.id' = 'faults', 'scan.startup.mode' = 'group-offsets', batch_size = 10);
         CREATE TABLE activity (user_id TEXT, window_start TIMESTAMP, events BIGINT)
         WITH (connector = 'kafka', topic = 'activity', 'bootstrap.servers' = '{servers}',
               'key.fields' = 'user_id');
         INSERT INTO activity
         SELECT user_id, window_start, count(*)
         FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
         GROUP BY user_id, window_start, window_end;"
    );
    let pipeline = Pipeline::load(&text, &SessionOptions::default())
        .await
        .unwrap();
    let shared = Arc::clone(pipeline.engine().shared());
    (shared, tokio::spawn(pipeline.run()))
}

/// Every message of `activity`, as `key => value`, sorted (see [`read_messages`]).
fn read_activity(cluster: &Cluster, want: usize) -> Vec<String> {
    let mut seen = read_messages(&cluster.bootstrap_servers(), "activity", 2, want);
    seen.sort();
    seen
}

/// Checks the output is complete without duplicates, stops the pipeline, and checks that
/// offsets were committed for both partitions.
async fn finish(
    cluster: &Cluster,
    shared: Arc<profusion::stream::PipelineContext>,
    running: JoinHandle<profusion::Result<RunSummary>>,
) {
    let expected = expected();
    let output = read_activity(cluster, expected.len());
    shared.stop.stop();
    let summary = running.await.unwrap().unwrap();
    assert!(summary.stopped);
    assert_eq!(output.len(), expected.len(), "every window exactly once");
    assert_eq!(output, expected);
    for offset in committed(&cluster.bootstrap_servers(), "faults", "events", 2) {
        assert!(
            matches!(offset, Offset::Offset(n) if n > 0),
            "offsets committed despite the faults: {offset:?}"
        );
    }
}

fn topics(cluster: &Cluster) {
    cluster.create_topic("events", 2, 1).unwrap();
    cluster.create_topic("activity", 2, 1).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_resumes_after_the_broker_is_down_for_ten_seconds() {
    let cluster = MockCluster::new(1).unwrap();
    topics(&cluster);
    let producer = producer(&cluster);
    send_events(&producer, 0..EVENTS / 2);
    producer.flush(Duration::from_secs(10)).unwrap();
    let (shared, running) = start(&cluster).await;
    // Some windows are out before the broker goes.
    assert!(!read_activity(&cluster, 1).is_empty());
    cluster.broker_down(1).unwrap();
    send_events(&producer, EVENTS / 2..EVENTS);
    tokio::time::sleep(Duration::from_secs(10)).await;
    cluster.broker_up(1).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    finish(&cluster, shared, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_rides_out_errors_on_produce_fetch_and_commit() {
    let cluster = MockCluster::new(1).unwrap();
    topics(&cluster);
    let producer = producer(&cluster);
    send_events(&producer, 0..EVENTS);
    producer.flush(Duration::from_secs(10)).unwrap();
    // Each error answers the next request of its kind; librdkafka retries after each.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        ],
    );
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    let (shared, running) = start(&cluster).await;
    finish(&cluster, shared, running).await;
}
