//! Kafka tables against librdkafka's in-process mock cluster: partitions read in parallel
//! with a watermark each, windows emitted when every partition has passed their end, and
//! bad records failing with their position or dropped, and topics read as bounded snapshots.

use crate::common;

use common::kafka::{THREE_MINUTES, event, produce, produce_events, query, query_with, table};
use profusion::stream::SourceReads;
use rdkafka::mocking::MockCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_close_when_every_partition_has_passed_them() {
    let cluster = MockCluster::new(1).unwrap();
    produce_events(&cluster, "events", &THREE_MINUTES);
    let rows = query(
        &table("events", "events", &cluster.bootstrap_servers(), ""),
        "SELECT user_id, window_start, count(*) AS n, sum(amount) AS spend
         FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
         GROUP BY user_id, window_start, window_end LIMIT 3",
    )
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            "+---------+---------------------+---+-------+",
            "+---------+---------------------+---+-------+",
            "+---------+---------------------+---+-------+",
            "| u1      | 2026-01-01T00:00:00 | 2 | 9.0   |",
            "| u2      | 2026-01-01T00:01:00 | 1 | 2.0   |",
            "| u3      | 2026-01-01T00:01:00 | 1 | 16.0  |",
            "| user_id | window_start        | n | spend |",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_fails_with_its_position_or_is_dropped() {
    let cluster = MockCluster::new(1).unwrap();
    let good = event("u1", 1.0, "00:00:10");
    produce(
        &cluster,
        "mixed",
        &[(0, &good), (0, "{\"user_id\": oops"), (0, &good)],
    );
    let servers = cluster.bootstrap_servers();
    let failed = query(
        &table("mixed", "mixed", &servers, ""),
        "SELECT user_id FROM mixed LIMIT 3",
    )
    .await
    .unwrap_err();
    assert!(
        failed.contains("bad record in topic mixed, partition 0, offset 1:"),
        "{failed}"
    );
    let kept = query(
        &table("mixed", "mixed", &servers, ", bad_data = 'drop'"),
        "SELECT user_id FROM mixed LIMIT 2",
    )
    .await
    .unwrap();
    assert_eq!(kept.iter().filter(|r| r.contains("u1")).count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_reads_up_to_the_end_and_finishes() {
    let cluster = MockCluster::new(1).unwrap();
    let messages: Vec<String> = (0..250)
        .map(|i| {
            event(
                &format!("u{}", i % 7),
                1.0,
                &format!("00:{:02}:{:02}", i / 60, i % 60),
            )
        })
        .collect();
    let messages: Vec<(i32, &str)> = messages
        .iter()
        .enumerate()
        .map(|(i, v)| ((i % 2) as i32, v.as_str()))
        .collect();
    produce(&cluster, "history", &messages);
    let servers = cluster.bootstrap_servers();
    let setup = table("history", "history", &servers, "");
    let count = query_with(
        SourceReads::Snapshot,
        &setup,
        "SELECT count(*) AS n FROM history",
    )
    .await
    .unwrap();
    assert!(count.contains(&"| 250 |".to_string()), "{count:?}");
    // Every window is emitted when the snapshot ends: minutes 0 to 4.
    let windows = query_with(
        SourceReads::Snapshot,
        &setup,
        "SELECT window_start, count(*) AS n FROM TUMBLE(history, ts, INTERVAL '1' MINUTE)
         GROUP BY window_start, window_end",
    )
    .await
    .unwrap();
    let counts: Vec<&str> = windows
        .iter()
        .filter(|r| r.contains("2026"))
        .map(|r| r.rsplit('|').nth(1).unwrap().trim())
        .collect();
    assert_eq!(counts, vec!["60", "60", "60", "60", "10"]);
    // Latest: nothing before the query started.
    let latest = table(
        "later",
        "history",
        &servers,
        ", 'scan.startup.mode' = 'latest'",
    );
    let none = query_with(
        SourceReads::Snapshot,
        &latest,
        "SELECT count(*) AS n FROM later",
    )
    .await
    .unwrap();
    assert!(none.contains(&"| 0 |".to_string()), "{none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_columns_hold_key_partition_offset_and_timestamp() {
    let cluster = MockCluster::new(1).unwrap();
    produce_events(
        &cluster,
        "keyed",
        &[
            (0, "u1", 1.0, "00:00:01"),
            (1, "u2", 2.0, "00:00:02"),
            (0, "u3", 3.0, "00:00:03"),
        ],
    );
    let servers = cluster.bootstrap_servers();
    let rows = query_with(
        SourceReads::Snapshot,
        &format!(
            "CREATE TABLE keyed (
               k TEXT METADATA FROM 'key', user_id TEXT NOT NULL,
               p INT METADATA FROM 'partition' VIRTUAL, o BIGINT METADATA FROM 'offset',
               kafka_ts TIMESTAMP(3) METADATA FROM 'timestamp', ts TIMESTAMP NOT NULL)
             WITH (connector = 'kafka', topic = 'keyed', 'bootstrap.servers' = '{servers}')"
        ),
        "SELECT k, user_id, p, o, kafka_ts FROM keyed ORDER BY p, o",
    )
    .await
    .unwrap();
    let data: Vec<&String> = rows
        .iter()
        .filter(|r| r.starts_with("| k") && !r.contains("user_id"))
        .collect();
    assert_eq!(
        data,
        vec![
            "| k0 | u1      | 0 | 0 | 2026-01-01T00:00:00     |",
            "| k1 | u2      | 1 | 0 | 2026-01-01T00:00:00.001 |",
            "| k2 | u3      | 0 | 1 | 2026-01-01T00:00:00.002 |",
        ]
    );
}

/// More partitions than the machine has cores: threads read several partitions each, with
/// one consumer, and every partition's messages reach its own stream, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_sharing_a_reading_thread_are_each_read_whole() {
    let cluster = MockCluster::new(1).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
    let partitions = cores * 2 + 1;
    cluster.create_topic("wide", partitions, 1).unwrap();
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    // Partition p holds p + 1 messages, so a message routed to the wrong stream shows.
    for partition in 0..partitions {
        for second in 0..=partition {
            let value = event(&format!("u{partition}"), 1.0, &format!("00:00:{second:02}"));
            common::kafka::send(&producer, "wide", partition, &value);
        }
    }
    rdkafka::producer::Producer::flush(&producer, std::time::Duration::from_secs(10)).unwrap();
    let servers = cluster.bootstrap_servers();
    let setup = format!(
        "CREATE TABLE wide (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL,
           p INT METADATA FROM 'partition' VIRTUAL, o BIGINT METADATA FROM 'offset')
         WITH (connector = 'kafka', topic = 'wide', 'bootstrap.servers' = '{servers}')"
    );
    let rows = query_with(
        SourceReads::Snapshot,
        &setup,
        "SELECT p, count(*) AS n, max(o) AS last, min(user_id) AS first_user,
                max(user_id) AS last_user FROM wide GROUP BY p ORDER BY p",
    )
    .await
    .unwrap();
    let data: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| r.starts_with("| ") && !r.contains("first_user"))
        .map(|r| {
            r.split('|')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    let expected: Vec<Vec<String>> = (0..partitions)
        .map(|p| {
            let user = format!("u{p}");
            vec![
                p.to_string(),
                (p + 1).to_string(),
                p.to_string(),
                user.clone(),
                user,
            ]
        })
        .collect();
    let mut data = data;
    data.sort_by_key(|row| row[0].parse::<i32>().unwrap());
    assert_eq!(data, expected);

    // Read continuously, every message arrives.
    let total = (1..=partitions).sum::<i32>();
    let all = query(&setup, &format!("SELECT user_id FROM wide LIMIT {total}"))
        .await
        .unwrap();
    let users = all
        .iter()
        .filter(|r| r.starts_with("| u") && !r.contains("user_id"));
    assert_eq!(users.count(), total as usize);
}
