//! The `/metrics` exposition of a pipeline that drops records: each source accounts for
//! every event it read (rows handed on, bad records by reason, duplicates), and each view
//! reports how stale its upserts were.

use std::time::Duration;

use profusion::serve::{Exposition, ServerMetrics};
use profusion::stream::PipelineMetrics;
use profusion::stream::SourceReads;
use profusion::{Pipeline, SessionOptions};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Four good events (one sent twice), one that is not JSON, one stamped in 2100.
const EVENTS: [&str; 7] = [
    r#"{"event_id": "e1", "user_id": "u1", "ts": "2026-01-01T00:00:01Z"}"#,
    r#"{"event_id": "e2", "user_id": "u2", "ts": "2026-01-01T00:00:02Z"}"#,
    r#"{"event_id": "e2", "user_id": "u2", "ts": "2026-01-01T00:00:02Z"}"#,
    r#"{"event_id": "e3", "user_id": "#,
    r#"{"event_id": "e4", "user_id": "u1", "ts": "2100-01-01T00:00:00Z"}"#,
    r#"{"event_id": "e5", "user_id": "u3", "ts": "2026-01-01T00:00:05Z"}"#,
    r#"{"event_id": "e6", "user_id": "u1", "ts": "2026-01-01T00:00:06Z"}"#,
];

/// The value of the sample `series` (name and labels, as exposed) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_accounts_for_every_event_it_read_and_each_view_for_its_staleness() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", 1, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .unwrap();
    for event in EVENTS {
        producer
            .send(
                BaseRecord::<str, str>::to("events")
                    .partition(0)
                    .payload(event),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "CREATE TABLE events (event_id TEXT NOT NULL, user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL,
           WATERMARK FOR ts AS ts)
         WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{servers}',
               bad_data = 'drop', 'dedup.key' = 'event_id');
         CREATE MATERIALIZED VIEW activity PRIMARY KEY (user_id)
           WITH (connector = 'sqlite', path = '{}') AS
         SELECT user_id, count(*) AS events FROM events GROUP BY user_id;",
        dir.path().join("activity.db").display()
    );
    let options = SessionOptions {
        reads: SourceReads::Snapshot,
        ..SessionOptions::default()
    };
    let pipeline = Pipeline::load(&text, &options).await.unwrap();
    let engine = pipeline.engine().clone();
    let summary = pipeline.run().await.unwrap();
    assert_eq!(summary.rows_out, 3, "one upsert per user");

    let text = Exposition::new(&engine.shared().metrics, None).text();
    let read =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    let events_in = read("profusion_source_events_in_total{table=\"events\"}");
    let rows_out = read("profusion_source_rows_out_total{table=\"events\"}");
    let not_json = read("profusion_bad_records_total{table=\"events\",reason=\"invalid_json\"}");
    let future = read("profusion_bad_records_total{table=\"events\",reason=\"future_event_time\"}");
    let duplicates = read("profusion_duplicate_rows_total{table=\"events\"}");
    assert_eq!(events_in, EVENTS.len() as f64);
    assert_eq!(
        (rows_out, not_json, future, duplicates),
        (4.0, 1.0, 1.0, 1.0)
    );
    // Nothing is lost unaccounted for.
    assert_eq!(events_in, rows_out + not_json + future + duplicates);

    let batches = read("profusion_profile_staleness_seconds_count{view=\"activity\"}");
    assert!(batches >= 1.0, "{text}");
    let seconds = read("profusion_profile_staleness_seconds_sum{view=\"activity\"}");
    assert!(seconds > 0.0, "{text}");
    // Every batch is in some bucket: the +Inf bucket counts them all.
    assert_eq!(
        read("profusion_profile_staleness_seconds_bucket{le=\"+Inf\",view=\"activity\"}"),
        batches
    );
}

#[test]
fn the_readme_lists_every_metric() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let text = Exposition::new(&PipelineMetrics::default(), Some(&ServerMetrics::default())).text();
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = family.split_once(' ').unwrap();
        let exposed = match kind {
            "counter" => format!("`{name}_total`"),
            _ => format!("`{name}`"),
        };
        assert!(
            readme.contains(&exposed),
            "README's Metrics section lacks {exposed}"
        );
    }
}
