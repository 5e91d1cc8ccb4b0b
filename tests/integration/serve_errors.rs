//! What a client learns when the server fails inside: a generic message and a request id,
//! never the broker's or the store's words (hosts, paths, users). The server's log has the
//! cause under the same id.

use crate::common;

use common::server::{INGEST_TOKEN, Server, field};

#[tokio::test]
async fn a_failed_write_answers_a_request_id_and_logs_the_cause() {
    // A Kafka table whose broker is not there: writes time out after a second.
    let dir = tempfile::tempdir().unwrap();
    let pipeline = "CREATE TABLE events (user_id TEXT NOT NULL) WITH (
        connector = 'kafka', topic = 'events', 'bootstrap.servers' = '127.0.0.1:1',
        format = 'json', 'properties.message.timeout.ms' = '1000');";
    let server = Server::start(dir.path(), pipeline, &[]);
    let (status, text) = server
        .post(
            "/v1/ingest/events",
            Some(INGEST_TOKEN),
            &[],
            br#"{"user_id":"u1"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 503, "{text}");
    for internal in ["127.0.0.1", "kafka", "topic", "timed out", "Message"] {
        assert!(
            !text.contains(internal),
            "the answer tells '{internal}': {text}"
        );
    }
    let id = field(&text, &["request_id"]);
    let id = id.as_str().expect("no request_id in the answer");
    assert_eq!(id.len(), 16, "{text}");
    assert!(text.contains(id) && text.contains("retry"), "{text}");
    let log = server.stop();
    let logged = log
        .lines()
        .find(|line| line.contains(id))
        .unwrap_or_else(|| panic!("request {id} is not in the log:\n{log}"));
    assert!(
        logged.contains("503") && logged.contains("events"),
        "the log line does not carry the cause: {logged}"
    );
}
