//! A million messages with 1% bad records of every kind a JSON table can meet (invalid JSON,
//! a wrong type, a missing NOT NULL value, several objects, an empty value, an oversize
//! value, a JSON Schema violation), through a pipeline reading the
//! out-of-process broker (tansu, started by `scripts/test`, which sets
//! `PROFUSION_TEST_KAFKA`) with `bad_data = 'dlq'`: exactly the 10,000 bad records land in
//! the dead-letter topic, each naming its own partition and offset, and the windows
//! computed from the rest equal those of the same pipeline run over the good records alone.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka::{consumer_from_start, create_topics, send, test_broker, unique};
use common::try_run_pipeline;
use profusion::{Pipeline, SessionOptions};
use rdkafka::ClientConfig;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, Producer};

const MESSAGES: usize = 1_000_000;
const PARTITIONS: usize = 3;
/// Values over this many bytes are `oversize`.
const MAX_RECORD_BYTES: usize = 512;

/// The bad records, one kind after another: every 100th message is one.
fn bad_value(n: usize) -> String {
    match n % 7 {
        0 => r#"{"user_id": "u1", "amount": 1, "ts": "#.to_string(),
        1 => r#"{"user_id": "u1", "amount": "lots", "ts": "2026-01-01T00:00:00Z"}"#.to_string(),
        2 => r#"{"amount": 1, "ts": "2026-01-01T00:00:00Z"}"#.to_string(),
        3 => String::new(),
        4 => r#"{"user_id": "u1", "ts": "2026-01-01T00:00:00Z"} {"user_id": "u2"}"#.to_string(),
        5 => format!(
            r#"{{"user_id": "{}", "ts": "2026-01-01T00:00:00Z"}}"#,
            "x".repeat(MAX_RECORD_BYTES)
        ),
        // Decodes, but the table's JSON Schema wants amounts of at least 0.
        _ => r#"{"user_id": "u1", "amount": -1, "ts": "2026-01-01T00:00:00Z"}"#.to_string(),
    }
}

fn good_value(i: usize) -> String {
    let millis = i as u64 * 10;
    let (h, m, s, ms) = (
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000,
    );
    format!(
        r#"{{"user_id": "u{}", "amount": {}, "ts": "2026-01-01T{h:02}:{m:02}:{s:02}.{ms:03}Z"}}"#,
        i % 100,
        i % 50
    )
}

const QUERY: &str = "SELECT user_id, window_start, count(*) AS events, sum(amount) AS spend
  FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY user_id, window_start, window_end";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_messages_with_one_percent_bad_put_exactly_the_bad_ones_in_the_dlq() {
    let Some(servers) = test_broker() else { return };
    let (topic, dlq) = (unique("volume"), unique("volume-dlq"));
    create_topics(&servers, &[(&topic, PARTITIONS as i32), (&dlq, 1)]).await;
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good.jsonl");
    // Amounts are never negative.
    let schema = dir.path().join("event.schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"amount": {"minimum": 0}}}"#,
    )
    .unwrap();

    // Produce: every 100th message bad; the good ones also go to a file.
    let started = Instant::now();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("queue.buffering.max.messages", "1000000")
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let mut good = String::new();
    let mut bad_positions = BTreeSet::new();
    let mut next_offset = [0i64; PARTITIONS];
    for i in 0..MESSAGES {
        let partition = i % PARTITIONS;
        let value = if i % 100 == 50 {
            bad_positions.insert((partition as i32, next_offset[partition]));
            bad_value(i / 100)
        } else {
            let value = good_value(i);
            good.push_str(&value);
            good.push('\n');
            value
        };
        next_offset[partition] += 1;
        send(&producer, &topic, partition as i32, &value);
    }
    // A sentinel an hour after the last event closes every window.
    for partition in 0..PARTITIONS {
        let sentinel = r#"{"user_id": "sentinel", "amount": 0, "ts": "2026-01-02T00:00:00Z"}"#;
        send(&producer, &topic, partition as i32, sentinel);
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    std::fs::write(&good_path, good).unwrap();
    eprintln!("produced {MESSAGES} messages in {:?}", started.elapsed());
    assert_eq!(bad_positions.len(), MESSAGES / 100);

    // The same pipeline over the good records alone (a file, read to its end).
    let good_out = dir.path().join("good_out.jsonl");
    let columns = "user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL";
    try_run_pipeline(
        &format!(
            "CREATE TABLE events ({columns}, WATERMARK FOR ts AS ts)
               WITH (connector = 'file', path = '{}', format = 'json');
             CREATE TABLE out (user_id TEXT, window_start TIMESTAMP, events BIGINT, spend DOUBLE)
               WITH (connector = 'file', path = '{}', format = 'json');
             INSERT INTO out {QUERY};",
            good_path.display(),
            good_out.display()
        ),
        &SessionOptions::default(),
    )
    .await
    .unwrap();
    let expected = sorted_lines(&good_out);

    // The pipeline over the topic, until every window but the sentinels' is out.
    let started = Instant::now();
    let kafka_out = dir.path().join("kafka_out.jsonl");
    let pipeline = Pipeline::load(
        &format!(
            "CREATE TABLE events ({columns}, WATERMARK FOR ts AS ts)
               WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{servers}',
                     bad_data = 'dlq', 'dlq.topic' = '{dlq}', max_record_bytes = {MAX_RECORD_BYTES},
                     'json.schema' = '{}');
             CREATE TABLE out (user_id TEXT, window_start TIMESTAMP, events BIGINT, spend DOUBLE)
               WITH (connector = 'file', path = '{}', format = 'json');
             INSERT INTO out {QUERY};",
            schema.display(),
            kafka_out.display()
        ),
        &SessionOptions::default(),
    )
    .await
    .unwrap();
    let shared = Arc::clone(pipeline.engine().shared());
    let running = tokio::spawn(pipeline.run());
    let deadline = Instant::now() + Duration::from_secs(600);
    while shared.metrics.rows_out.get() < expected.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "the pipeline did not finish in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shared.stop.stop();
    let summary = running.await.unwrap().unwrap();
    eprintln!(
        "read {} good records in {:?}; bad by kind: {:?}",
        summary.events_in,
        started.elapsed(),
        summary.bad_records
    );
    assert_eq!(summary.bad_records.values().sum::<u64>(), 10_000);
    assert_eq!(summary.bad_records.len(), 7, "every kind");
    assert_eq!(sorted_lines(&kafka_out), expected);
    assert_eq!(
        dead_letters(&servers, &dlq, bad_positions.len()),
        bad_positions
    );
}

fn sorted_lines(path: &std::path::Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// The (partition, offset) each dead letter names, reading until `want` have arrived and
/// a second has passed without more.
fn dead_letters(servers: &str, topic: &str, want: usize) -> BTreeSet<(i32, i64)> {
    let consumer = consumer_from_start(servers, topic, 1);
    let mut positions = BTreeSet::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline
        && (count < want || quiet_since.elapsed() < Duration::from_secs(1))
    {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        quiet_since = Instant::now();
        count += 1;
        let header = |name: &str| -> String {
            let headers = message.headers().unwrap();
            let found = headers.iter().find(|h| h.key == name).unwrap();
            String::from_utf8(found.value.unwrap().to_vec()).unwrap()
        };
        positions.insert((
            header("dlq.source.partition").parse().unwrap(),
            header("dlq.source.offset").parse().unwrap(),
        ));
    }
    assert_eq!(count, want, "exactly the bad records, each once");
    positions
}
