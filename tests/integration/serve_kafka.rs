//! Webhook → Kafka → profile → GET: events pushed to `POST /v1/ingest/events` of
//! `sql/serve_profiles_kafka.sql` are produced to the topic on the test broker, read back by
//! the pipeline into the SQLite profile, and served by `GET /v1/views/...`.

use crate::common;

use std::time::Duration;

use common::kafka::{create_topics, read_messages, test_broker, unique};
use common::server::{INGEST_TOKEN, READ_TOKEN, Server, field, signed};

const SECRET: &str = "round-trip-secret";

#[tokio::test]
async fn a_webhook_event_travels_through_kafka_into_a_served_profile() {
    let Some(servers) = test_broker() else {
        return;
    };
    let topic = unique("webhook-events");
    create_topics(&servers, &[(&topic, 2)]).await;
    let dir = tempfile::tempdir().unwrap();
    let root = common::repository_path("");
    let root = root.display();
    let pipeline = std::fs::read_to_string(format!("{root}/sql/serve_profiles_kafka.sql")).unwrap();
    let models = format!("{root}/sql/models");
    let server = Server::start(
        dir.path(),
        &pipeline,
        &[
            ("WEBHOOK_SECRET", SECRET),
            ("EVENTS_TOPIC", &topic),
            ("KAFKA_BOOTSTRAP", &servers),
            ("MODELS", &models),
        ],
    );

    let users = ["ana", "bo", "cy"];
    let mut sent = 0;
    for round in 0..5 {
        let events: Vec<String> = users
            .iter()
            .map(|user| {
                format!(
                    r#"{{"user_id":"{user}","event_type":"purchase","amount":{round}.5,"ts":"2026-01-01T00:00:0{round}Z"}}"#
                )
            })
            .collect();
        let body = format!("[{}]", events.join(","));
        let (status, text) = server
            .post(
                "/v1/ingest/events",
                Some(INGEST_TOKEN),
                &signed(SECRET, body.as_bytes()),
                body.into_bytes(),
            )
            .await;
        assert_eq!(status, 202, "{text}");
        sent += users.len();
    }
    // Accepted means on the broker: the topic holds every event.
    assert_eq!(read_messages(&servers, &topic, 2, sent).len(), sent);

    for user in users {
        let path = format!("/v1/views/user_profile/{user}");
        let mut last = String::new();
        let mut found = false;
        for _ in 0..1500 {
            let (status, body) = server.get(&path, Some(READ_TOKEN)).await;
            if status == 200 && field(&body, &["row", "events"]) == 5 {
                assert_eq!(field(&body, &["row", "spend"]), 0.5 + 1.5 + 2.5 + 3.5 + 4.5);
                found = true;
                break;
            }
            last = format!("{status} {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            found,
            "{user}'s profile never showed 5 events; last: {last}\n{}",
            server.log.lock().unwrap()
        );
    }
    let (status, scored) = server
        .post(
            "/v1/score/user_profile/ana",
            Some(READ_TOKEN),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(status, 200, "{scored}");
    assert!(
        field(&scored, &["scores", "purchase_propensity"])
            .as_f64()
            .is_some(),
        "{scored}"
    );
    server.stop();
}
