//! The crash test: a pipeline reads 200,000 events (1% duplicated, up to 2 s out of
//! order) from a broker in its own process into a profile view, a one-minute tumble sink,
//! a count over a `UNION ALL` of the topic read twice, a window over an interval join of
//! the topic with itself, a window join of two per-minute counts, and a window over a
//! temporal join of the topic with itself read as a versioned table, all in SQLite. The
//! `profusion run --checkpoint-dir` process is killed with SIGKILL at random moments, at
//! least 20 times, and restarted each time from its latest complete
//! checkpoint. At the end the profile table equals the batch recomputation of the same
//! input, every key and every value, and the window table holds each (user, window)
//! exactly once with the right values: no event lost, none counted twice.
//!
//! It runs with the broker `scripts/test` starts (`PROFUSION_TEST_KAFKA`);
//! `PROFUSION_CRASH_KILLS` sets the number of kills (20 by default).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

use common::kafka::{create_topics, send, test_broker, unique};
use common::{lines, print_difference, run_pipeline};
use profusion::sql::parse_pipeline;
use profusion::{Engine, SessionOptions};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

const EVENTS: usize = 200_000;
const KILLS: usize = 20;
const COLUMNS: &str =
    "user_id TEXT NOT NULL, event_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_twenty_times_the_profiles_and_windows_equal_the_batch_result() {
    let Some(servers) = test_broker() else { return };
    let topic = unique("crash-events");
    create_topics(&servers, &[(&topic, 3)]).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let input = input.to_str().unwrap();
    run_pipeline(&format!(
        "CREATE TABLE generated ({COLUMNS}) WITH (connector = 'datagen', count = {EVENTS},
           users = 500, seed = 23, out_of_order = '2s', duplicate_rate = 0.01, step = '10ms');
         CREATE TABLE out ({COLUMNS}) WITH (connector = 'file', path = '{input}', format = 'json');
         INSERT INTO out SELECT * FROM generated;"
    ))
    .await;
    produce(&servers, &topic, input);

    let db = dir.path().join("profiles.db");
    let db = db.to_str().unwrap().to_string();
    let checkpoints = dir.path().join("checkpoints");
    let pipeline = dir.path().join("pipeline.sql");
    std::fs::write(
        &pipeline,
        format!(
            "CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '3' SECOND)
               WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{servers}',
                     'scan.startup.mode' = 'earliest', 'dedup.key' = 'event_id');
             CREATE TABLE activity (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
                 events BIGINT, spend DOUBLE, PRIMARY KEY (user_id, window_start))
               WITH (connector = 'sqlite', path = '{db}', table = 'activity');
             INSERT INTO activity
             SELECT user_id, window_start, count(*), sum(amount)
               FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
               GROUP BY user_id, window_start, window_end;
             CREATE MATERIALIZED VIEW profiles PRIMARY KEY (user_id)
               WITH (connector = 'sqlite', path = '{db}') AS
             SELECT user_id, count(*) AS events, sum(amount) AS spend, max(ts) AS last_seen
               FROM events GROUP BY user_id;
             CREATE TABLE events_again ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '3' SECOND)
               WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{servers}',
                     'scan.startup.mode' = 'earliest', 'dedup.key' = 'event_id');
             CREATE MATERIALIZED VIEW both_counts PRIMARY KEY (user_id)
               WITH (connector = 'sqlite', path = '{db}') AS
             SELECT user_id, count(*) AS events
               FROM (SELECT user_id FROM events UNION ALL SELECT user_id FROM events_again)
               GROUP BY user_id;
             CREATE TABLE pairs (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
                 events BIGINT, PRIMARY KEY (user_id, window_start))
               WITH (connector = 'sqlite', path = '{db}', table = 'pairs');
             INSERT INTO pairs
             SELECT user_id, window_start, count(*) FROM TUMBLE(
                 (SELECT a.user_id, a.ts FROM events a JOIN events_again b
                    ON a.user_id = b.user_id AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND),
                 ts, INTERVAL '1' MINUTE)
               GROUP BY user_id, window_start, window_end;
             CREATE TABLE minute_pairs (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
                 events BIGINT, PRIMARY KEY (user_id, window_start))
               WITH (connector = 'sqlite', path = '{db}', table = 'minute_pairs');
             INSERT INTO minute_pairs
             SELECT a.user_id, a.window_start, a.n + b.n
             FROM (SELECT user_id, window_start, window_end, count(*) AS n
                   FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
                   GROUP BY user_id, window_start, window_end) a
             JOIN (SELECT user_id, window_start, window_end, count(*) AS n
                   FROM TUMBLE(events_again, ts, INTERVAL '1' MINUTE)
                   GROUP BY user_id, window_start, window_end) b
               ON a.user_id = b.user_id AND a.window_start = b.window_start
              AND a.window_end = b.window_end;
             CREATE TABLE recent_pairs (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
                 events BIGINT, PRIMARY KEY (user_id, window_start))
               WITH (connector = 'sqlite', path = '{db}', table = 'recent_pairs');
             INSERT INTO recent_pairs
             SELECT user_id, window_start, count(*) FROM TUMBLE(
                 (SELECT a.user_id, a.ts
                  FROM (SELECT user_id, ts, ts - INTERVAL '1' SECOND AS before FROM events) a
                  JOIN events_again FOR SYSTEM_TIME AS OF a.before AS v ON v.user_id = a.user_id
                  WHERE a.ts - v.ts < INTERVAL '3' SECOND),
                 ts, INTERVAL '1' MINUTE)
               GROUP BY user_id, window_start, window_end;"
        ),
    )
    .unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_profusion"))
            .arg("run")
            .arg(&pipeline)
            .args(["--checkpoint-dir", checkpoints.to_str().unwrap()])
            .args(["--checkpoint-interval", "500ms", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };

    // Kill at random moments (a fixed-seed generator: a failure can be replayed).
    let mut random = Lcg(0x5eed_2026);
    let kills: usize = std::env::var("PROFUSION_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(KILLS);
    for _ in 0..kills {
        let mut child = run();
        tokio::time::sleep(Duration::from_millis(300 + random.next() % 2200)).await;
        kill(&mut child);
    }
    let completed = std::process::Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["checkpoints", "list"])
        .arg(&checkpoints)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&completed.stdout);
    assert!(kills == 0 || listing.contains("complete"), "{listing}");

    // The last run catches up; the comparison is read until it holds (or time is up).
    let mut child = run();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut outcome = compare(input, &db).await;
    while !outcome.is_exact() && Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the last run ended early: {status}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        outcome = compare(input, &db).await;
    }
    kill(&mut child);
    println!(
        "{kills} kills: lost {}, duplicated {} (profiles), lost {}, duplicated {} (windows), \
         lost {}, duplicated {} (view over a UNION ALL), lost {}, duplicated {} (window over \
         an interval join), lost {}, duplicated {} (window join), lost {}, duplicated {} \
         (window over a temporal join)",
        outcome.profiles.0,
        outcome.profiles.1,
        outcome.windows.0,
        outcome.windows.1,
        outcome.both.0,
        outcome.both.1,
        outcome.pairs.0,
        outcome.pairs.1,
        outcome.minute_pairs.0,
        outcome.minute_pairs.1,
        outcome.recent_pairs.0,
        outcome.recent_pairs.1
    );
    for (name, (expected, actual)) in [
        ("profiles", &outcome.profile_rows),
        ("windows", &outcome.window_rows),
    ] {
        print_difference(name, expected, actual);
    }
    assert_eq!(
        outcome.profiles,
        (0, 0),
        "events lost / duplicated in profiles"
    );
    assert_eq!(
        outcome.windows,
        (0, 0),
        "events lost / duplicated in windows"
    );
    assert_eq!(
        outcome.both,
        (0, 0),
        "events lost / duplicated in the view over a UNION ALL"
    );
    assert_eq!(
        outcome.pairs,
        (0, 0),
        "pairs lost / duplicated in the window over an interval join"
    );
    assert_eq!(
        outcome.minute_pairs,
        (0, 0),
        "events lost / duplicated in the window join"
    );
    assert_eq!(
        outcome.recent_pairs,
        (0, 0),
        "events lost / duplicated in the window over a temporal join"
    );
    assert_eq!(
        outcome.profile_rows.0, outcome.profile_rows.1,
        "profiles differ"
    );
    assert_eq!(
        outcome.window_rows.0, outcome.window_rows.1,
        "windows differ"
    );
}

/// Writes the JSON lines at `path` to the topic's 3 partitions, then in each partition a
/// sentinel event an hour later, which closes every window of the data.
///
/// One record per batch: the test broker (tansu 0.6.0) answers a fetch that starts inside
/// a record batch with the next batch, skipping the rest of that one, so a restart from a
/// checkpointed offset would lose records that Kafka itself would serve.
fn produce(servers: &str, topic: &str, path: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let sentinel = r#"{"user_id": "sentinel", "event_id": "sentinel", "amount": 0, "ts": "2026-01-02T00:00:00Z"}"#;
    let lines = text
        .lines()
        .map(|l| (l, None))
        .chain((0..3).map(|p| (sentinel, Some(p))));
    for (i, (line, partition)) in lines.enumerate() {
        send(&producer, topic, partition.unwrap_or((i % 3) as i32), line);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

fn kill(child: &mut Child) {
    // `Child::kill` is SIGKILL on Unix: no flush, no final checkpoint.
    let _ = child.kill();
    let _ = child.wait();
}

/// What the stores hold against the batch recomputation.
struct Outcome {
    /// (events lost, events counted twice) over the profiles and over the windows.
    profiles: (i64, i64),
    windows: (i64, i64),
    /// The same over the view of the `UNION ALL`, where each event counts twice.
    both: (i64, i64),
    /// Joined pairs per user and minute, over the window on the interval join.
    pairs: (i64, i64),
    /// Events per user and minute, counted twice, over the window join.
    minute_pairs: (i64, i64),
    /// Events per user and minute whose user's latest event at least a second before came
    /// less than 3 seconds before, over the window on the temporal join.
    recent_pairs: (i64, i64),
    /// (expected, actual) rows.
    profile_rows: (Vec<String>, Vec<String>),
    window_rows: (Vec<String>, Vec<String>),
}

impl Outcome {
    fn is_exact(&self) -> bool {
        self.profiles == (0, 0)
            && self.windows == (0, 0)
            && self.both == (0, 0)
            && self.pairs == (0, 0)
            && self.minute_pairs == (0, 0)
            && self.recent_pairs == (0, 0)
            && self.profile_rows.0 == self.profile_rows.1
            && self.window_rows.0 == self.window_rows.1
    }
}

async fn compare(input: &str, db: &str) -> Outcome {
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    let setup = format!(
        "CREATE TABLE input ({COLUMNS}) WITH (connector = 'file', path = '{input}', format = 'json');
         CREATE TABLE activity (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
             events BIGINT, spend DOUBLE, PRIMARY KEY (user_id, window_start))
           WITH (connector = 'sqlite', path = '{db}', table = 'activity');
         CREATE TABLE stream ({COLUMNS}) WITH (connector = 'memory');
         CREATE MATERIALIZED VIEW profiles PRIMARY KEY (user_id)
           WITH (connector = 'sqlite', path = '{db}') AS
         SELECT user_id, count(*) AS events, sum(amount) AS spend, max(ts) AS last_seen
           FROM stream GROUP BY user_id;
         CREATE MATERIALIZED VIEW both_counts PRIMARY KEY (user_id)
           WITH (connector = 'sqlite', path = '{db}') AS
         SELECT user_id, count(*) AS events FROM stream GROUP BY user_id;
         CREATE VIEW events AS SELECT DISTINCT * FROM input;
         CREATE VIEW expected_both AS
           SELECT user_id, 2 * count(*) AS events FROM events GROUP BY user_id;
         CREATE VIEW actual_both AS
           SELECT user_id, events FROM both_counts WHERE user_id <> 'sentinel';
         CREATE VIEW expected_profiles AS
           SELECT user_id, count(*) AS events, round(sum(amount), 4) AS spend, max(ts) AS last_seen
           FROM events GROUP BY user_id;
         CREATE VIEW actual_profiles AS
           SELECT user_id, events, round(spend, 4) AS spend, last_seen
           FROM profiles WHERE user_id <> 'sentinel';
         CREATE VIEW expected_windows AS
           SELECT user_id, date_bin(INTERVAL '1 minute', ts) AS window_start, count(*) AS events,
                  round(sum(amount), 4) AS spend
           FROM events GROUP BY user_id, date_bin(INTERVAL '1 minute', ts);
         CREATE VIEW actual_windows AS
           SELECT user_id, window_start, events, round(spend, 4) AS spend
           FROM activity WHERE user_id <> 'sentinel';
         CREATE TABLE pairs (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
             events BIGINT, PRIMARY KEY (user_id, window_start))
           WITH (connector = 'sqlite', path = '{db}', table = 'pairs');
         CREATE TABLE minute_pairs (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
             events BIGINT, PRIMARY KEY (user_id, window_start))
           WITH (connector = 'sqlite', path = '{db}', table = 'minute_pairs');
         CREATE VIEW expected_pairs AS
           SELECT a.user_id, date_bin(INTERVAL '1 minute', a.ts) AS window_start, count(*) AS events
           FROM events a JOIN events b
             ON a.user_id = b.user_id AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND
           GROUP BY a.user_id, date_bin(INTERVAL '1 minute', a.ts);
         CREATE VIEW actual_pairs AS
           SELECT user_id, window_start, events FROM pairs WHERE user_id <> 'sentinel';
         CREATE VIEW expected_minute_pairs AS
           SELECT user_id, window_start, 2 * events AS events FROM expected_windows;
         CREATE VIEW actual_minute_pairs AS
           SELECT user_id, window_start, events FROM minute_pairs WHERE user_id <> 'sentinel';
         CREATE TABLE recent_pairs (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
             events BIGINT, PRIMARY KEY (user_id, window_start))
           WITH (connector = 'sqlite', path = '{db}', table = 'recent_pairs');
         CREATE VIEW expected_recent_pairs AS
           SELECT user_id, date_bin(INTERVAL '1 minute', ts) AS window_start, count(*) AS events
           FROM (SELECT user_id, ts, max(ts) OVER (PARTITION BY user_id ORDER BY ts
                   RANGE BETWEEN UNBOUNDED PRECEDING AND INTERVAL '1' SECOND PRECEDING) AS before
                 FROM events)
           WHERE ts - before < INTERVAL '3' SECOND
           GROUP BY user_id, date_bin(INTERVAL '1 minute', ts);
         CREATE VIEW actual_recent_pairs AS
           SELECT user_id, window_start, events FROM recent_pairs WHERE user_id <> 'sentinel';"
    );
    for statement in parse_pipeline(&setup).unwrap() {
        engine.submit(statement).await.unwrap();
    }
    let rows = |sql: String| {
        let engine = engine.clone();
        async move {
            let frame = engine.context().sql(&sql).await.unwrap();
            lines(&frame.collect().await.unwrap())
        }
    };
    let difference = |keys: &str, expected: &str, actual: &str| {
        format!(
            "SELECT coalesce(sum(CASE WHEN e.events > coalesce(a.events, 0)
                                   THEN e.events - coalesce(a.events, 0) ELSE 0 END), 0) AS lost,
                    coalesce(sum(CASE WHEN a.events > coalesce(e.events, 0)
                                   THEN a.events - coalesce(e.events, 0) ELSE 0 END), 0) AS duplicated
             FROM {expected} e FULL OUTER JOIN {actual} a USING ({keys})"
        )
    };
    let counts = |sql: String| {
        let engine = engine.clone();
        async move {
            let frame = engine.context().sql(&sql).await.unwrap();
            let batches = frame.collect().await.unwrap();
            let batch = &batches[0];
            let value = |i: usize| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .unwrap()
                    .value(0)
            };
            (value(0), value(1))
        }
    };
    Outcome {
        profiles: counts(difference(
            "user_id",
            "expected_profiles",
            "actual_profiles",
        ))
        .await,
        windows: counts(difference(
            "user_id, window_start",
            "expected_windows",
            "actual_windows",
        ))
        .await,
        both: counts(difference("user_id", "expected_both", "actual_both")).await,
        pairs: counts(difference(
            "user_id, window_start",
            "expected_pairs",
            "actual_pairs",
        ))
        .await,
        minute_pairs: counts(difference(
            "user_id, window_start",
            "expected_minute_pairs",
            "actual_minute_pairs",
        ))
        .await,
        recent_pairs: counts(difference(
            "user_id, window_start",
            "expected_recent_pairs",
            "actual_recent_pairs",
        ))
        .await,
        profile_rows: (
            rows("SELECT * FROM expected_profiles ORDER BY user_id".into()).await,
            rows("SELECT * FROM actual_profiles ORDER BY user_id".into()).await,
        ),
        window_rows: (
            rows("SELECT * FROM expected_windows ORDER BY user_id, window_start".into()).await,
            rows("SELECT * FROM actual_windows ORDER BY user_id, window_start".into()).await,
        ),
    }
}

/// A small fixed-seed generator for the kill times.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}
