//! What a table can take from webhooks, checked per request: a followed memory table keeps
//! only its `'retention'` and says when it is full; `serve` refuses to start with one that
//! would keep every event; an event too large for Kafka fails its own request (413) while
//! the requests around it are written.

use crate::common;

use std::time::Duration;

use common::kafka::read_messages;
use common::server::{INGEST_TOKEN, READ_TOKEN, Server, field};
use rdkafka::mocking::MockCluster;

async fn push(server: &Server, table: &str, body: String) -> (u16, String) {
    server
        .post(
            &format!("/v1/ingest/{table}"),
            Some(INGEST_TOKEN),
            &[],
            body.into_bytes(),
        )
        .await
}

fn event(user: &str, second: u32) -> String {
    format!(r#"{{"user_id":"{user}","ts":"2026-01-01T00:00:{second:02}Z"}}"#)
}

#[tokio::test]
async fn a_followed_memory_table_keeps_its_retention_and_says_when_it_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = "
        CREATE TABLE events (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL)
          WITH (connector = 'memory', 'scan.mode' = 'follow', retention = '5 rows');
        CREATE TABLE unread (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL)
          WITH (connector = 'memory', 'scan.mode' = 'follow', retention = '5 rows');
        CREATE MATERIALIZED VIEW activity PRIMARY KEY (user_id)
          WITH (connector = 'sqlite', path = 'activity.db') AS
        SELECT user_id, count(*) AS events FROM events GROUP BY user_id;";
    let server = Server::start(dir.path(), pipeline, &[]);

    // Read as they come, 20 events pass through a table that keeps 5.
    for second in 0..20 {
        let (status, text) = push(&server, "events", event("u1", second)).await;
        assert_eq!(status, 202, "event {second}: {text}");
    }
    let mut last = String::new();
    for _ in 0..500 {
        let (status, body) = server.get("/v1/views/activity/u1", Some(READ_TOKEN)).await;
        if status == 200 && field(&body, &["row", "events"]) == 20 {
            last.clear();
            break;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(last.is_empty(), "the view never counted 20 events: {last}");

    // Nothing reads this one: it takes 5 rows, then is full, and other tables go on.
    for second in 0..5 {
        assert_eq!(push(&server, "unread", event("u2", second)).await.0, 202);
    }
    let (status, text) = push(&server, "unread", event("u2", 5)).await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("full") && text.contains("5 rows") && text.contains("'retention'"),
        "{text}"
    );
    assert_eq!(push(&server, "events", event("u1", 30)).await.0, 202);
    server.stop();
}

#[tokio::test]
async fn serve_refuses_a_followed_memory_table_without_retention() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.sql");
    std::fs::write(
        &file,
        "CREATE TABLE events (user_id TEXT NOT NULL) WITH (connector = 'memory', 'scan.mode' = 'follow');",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["serve", "--no-auth", "--listen", "127.0.0.1:0", "--quiet"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("table events") && stderr.contains("'retention'"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_event_too_large_for_kafka_fails_its_own_request_only() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", 1, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, note TEXT) WITH (
           connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{servers}', format = 'json');"
    );
    let server = Server::start(dir.path(), &pipeline, &[]);

    // Under the 1 MiB body limit, over librdkafka's message.max.bytes (1,000,000).
    let huge = format!(r#"{{"user_id":"big","note":"{}"}}"#, "x".repeat(1_000_100));
    assert!(huge.len() < 1 << 20);
    let small = |i: usize| format!(r#"{{"user_id":"small-{i}","note":"ok"}}"#);
    let (big, smalls) = tokio::join!(
        push(&server, "events", huge),
        futures::future::join_all((0..40).map(|i| push(&server, "events", small(i))))
    );
    assert_eq!(big.0, 413, "{}", big.1);
    assert!(big.1.contains("message.max.bytes"), "{}", big.1);
    for (i, (status, text)) in smalls.iter().enumerate() {
        assert_eq!(*status, 202, "small request {i}: {text}");
    }
    let servers_for_read = servers.clone();
    let written =
        tokio::task::spawn_blocking(move || read_messages(&servers_for_read, "events", 1, 40))
            .await
            .unwrap();
    assert_eq!(written.len(), 40, "{written:?}");
    assert!(written.iter().all(|m| m.contains("small-")), "{written:?}");
    server.stop();
}

#[tokio::test]
async fn an_event_stamped_far_ahead_of_the_clock_is_refused_with_400() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = "
        CREATE TABLE events (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts)
          WITH (connector = 'memory', 'scan.mode' = 'follow', retention = '1000 rows');";
    let server = Server::start(dir.path(), pipeline, &[]);
    let body = format!(
        "[{},{}]",
        event("u1", 1),
        r#"{"user_id":"u2","ts":"2100-01-01T00:00:00Z"}"#
    );
    let (status, text) = push(&server, "events", body).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("event 1") && text.contains("'watermark.max_future'"),
        "{text}"
    );
    assert_eq!(push(&server, "events", event("u1", 2)).await.0, 202);
    server.stop();
}
