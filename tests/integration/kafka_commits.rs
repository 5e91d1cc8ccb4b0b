//! Offsets are committed to a table's consumer group only for rows whose results have
//! reached the sinks: rows still held by an open window are read again by a pipeline that
//! restarts from the group's offsets.

use crate::common;

use common::kafka::{
    THREE_MINUTES, committed, event, produce, produce_events, query, query_with, table,
};
use profusion::stream::SourceReads;
use rdkafka::Offset;
use rdkafka::mocking::MockCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_for_emitted_windows_only() {
    let cluster = MockCluster::new(1).unwrap();
    produce_events(&cluster, "events", &THREE_MINUTES);
    let servers = cluster.bootstrap_servers();
    // One message per batch, so that each row's position can be settled on its own.
    let grouped =
        ", 'group.id' = 'activity', 'scan.startup.mode' = 'group-offsets', batch_size = 1";

    // Windows 00:00 and 00:01 close once both partitions pass 00:02; 00:02 stays open.
    let emitted = query(
        &table("events", "events", &servers, grouped),
        "SELECT user_id, window_start, count(*) AS n
         FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
         GROUP BY user_id, window_start, window_end LIMIT 3",
    )
    .await
    .unwrap();
    assert_eq!(emitted.iter().filter(|r| r.contains("2026")).count(), 3);
    assert_eq!(
        committed(&servers, "activity", "events", 2),
        vec![Offset::Offset(2), Offset::Offset(2)],
        "the rows of the open window (offset 2 of each partition) are not committed"
    );

    // A restart from the group's offsets reads exactly the rows of the open window.
    let resumed = query_with(
        SourceReads::Snapshot,
        &table("events", "events", &servers, grouped),
        "SELECT user_id, ts FROM events",
    )
    .await
    .unwrap();
    let resumed: Vec<&String> = resumed.iter().filter(|r| r.contains("2026")).collect();
    assert_eq!(
        resumed,
        vec![
            "| u1      | 2026-01-01T00:02:30 |",
            "| u3      | 2026-01-01T00:02:40 |",
        ]
    );
    // Reading a snapshot commits nothing.
    assert_eq!(
        committed(&servers, "activity", "events", 2),
        vec![Offset::Offset(2), Offset::Offset(2)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_group_nothing_is_committed() {
    let cluster = MockCluster::new(1).unwrap();
    let first = event("u1", 1.0, "00:00:10");
    produce(&cluster, "plain", &[(0, &first), (1, &first)]);
    let servers = cluster.bootstrap_servers();
    let rows = query(
        &table("plain", "plain", &servers, ""),
        "SELECT user_id FROM plain LIMIT 2",
    )
    .await
    .unwrap();
    assert_eq!(rows.iter().filter(|r| r.contains("u1")).count(), 2);
    assert_eq!(
        committed(&servers, "profusion", "plain", 2),
        vec![Offset::Invalid, Offset::Invalid]
    );
}

/// A `'group.id'` is where offsets are committed, not a way to share partitions: two runs
/// with one group id (and no `--group`) each read every partition, as the README says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_with_one_group_id_each_read_every_partition() {
    let cluster = MockCluster::new(1).unwrap();
    produce_events(&cluster, "shared", &THREE_MINUTES);
    let servers = cluster.bootstrap_servers();
    let setup = table("shared", "shared", &servers, ", 'group.id' = 'one-group'");
    let read_all = || query(&setup, "SELECT user_id, ts FROM shared LIMIT 6");
    let both = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        futures::future::join(read_all(), read_all()),
    )
    .await
    .expect("a run did not get every message: the partitions were shared");
    for rows in [both.0.unwrap(), both.1.unwrap()] {
        assert_eq!(
            rows.iter().filter(|r| r.contains("2026")).count(),
            6,
            "{rows:?}"
        );
    }
}
