//! Several `profusion run --group` processes sharing one pipeline through a consumer
//! group: events keyed by user in a 6-partition topic go to a PostgreSQL profile view and
//! to one-minute windows written to a Kafka topic. Three processes start; one of them ends
//! mid-run; a fourth joins later. When the group has caught up, the view equals the batch
//! result of the same events, key by key, and the window topic holds exactly the batch
//! windows (a window written again after a partition moved carries the same values):
//! nothing lost, nothing counted twice.
//!
//! Over the mock cluster the pipeline also counts by event type, a key the topic is not
//! keyed by: a window and a view whose rows go through repartition topics, written and read
//! by the tasks, with the same check against the batch result.
//!
//! Over the broker `scripts/test` starts (tansu), the process that ends is stopped with
//! Ctrl-C and leaves the group. tansu 0.6 does not give a SIGKILLed member's partitions to
//! the others (its group stays with the dead member as leader, or hands out only the
//! survivors' old partitions), so the SIGKILL case runs against librdkafka's mock cluster,
//! hosted by this test process on 127.0.0.1 and reached by the `profusion` processes over
//! TCP like any broker.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;

use common::kafka::{committed, create_topics, send, test_broker, unique};
use common::server::{READ_TOKEN, Server, field};
use common::{batch_over_json, lines, print_difference, write_generated_json};
use profusion::sql::parse_pipeline;
use profusion::stream::SourceReads;
use profusion::{Engine, SessionOptions};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{ClientConfig, Offset};

const PARTITIONS: i32 = 6;
const EVENTS: u64 = 20_000;
const COLUMNS: &str = "user_id TEXT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL, \
     amount DOUBLE, ts TIMESTAMP NOT NULL";

/// How the process that leaves mid-run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    /// Ctrl-C: it stops its tasks and leaves the group.
    Interrupted,
    /// SIGKILL: the group notices only when its session times out.
    Killed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_leaving_and_joining_a_group_equal_one_run_over_the_broker() {
    let (Some(servers), Some(postgres)) = (test_broker(), test_postgres()) else {
        return;
    };
    let events = unique("group-events");
    let windows = unique("group-windows");
    create_topics(&servers, &[(&events, PARTITIONS), (&windows, PARTITIONS)]).await;
    shared_run(
        &servers,
        [&events, &windows],
        &postgres,
        &unique("group"),
        Ending::Interrupted,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_partitions_move_to_the_others_and_nothing_is_lost_or_doubled() {
    let Some(postgres) = test_postgres() else {
        return;
    };
    let cluster = MockCluster::new(1).unwrap();
    let (events, windows) = ("events", "windows");
    for topic in [events, windows] {
        cluster.create_topic(topic, PARTITIONS, 1).unwrap();
    }
    // The mock cluster cannot create topics on request: the repartition topics are made here.
    let group = unique("group");
    for job in ["by_type", "type_totals"] {
        let topic = format!("{group}-{job}-repartition");
        cluster.create_topic(&topic, PARTITIONS, 1).unwrap();
    }
    let servers = cluster.bootstrap_servers();
    shared_run(
        &servers,
        [events, windows],
        &postgres,
        &group,
        Ending::Killed,
    )
    .await;
}

/// How a process planned in this test takes part in `group`, checkpointing in `checkpoints`.
fn group_options(group: &str, checkpoints: &Path) -> profusion::pipeline::group::GroupOptions {
    profusion::pipeline::group::GroupOptions {
        group: group.to_string(),
        checkpoints: profusion::pipeline::checkpoint::CheckpointOptions {
            location: checkpoints.display().to_string(),
            interval: Duration::from_secs(1),
            writer: None,
        },
        session_timeout: Duration::from_secs(10),
    }
}

fn test_postgres() -> Option<String> {
    let url = std::env::var("PROFUSION_TEST_POSTGRES").ok();
    if url.is_none() {
        eprintln!("skipped: PROFUSION_TEST_POSTGRES is not set; scripts/test starts PostgreSQL");
    }
    url
}

/// Three processes of `group` reading topic `events` (6 partitions) into a view and the
/// topic `windows`, the first ending as `ending` says once the group is under way, a fourth
/// joining after; then the stores against the batch result. A killed process's group
/// also counts by event type, through repartition topics.
async fn shared_run(
    servers: &str,
    [events, windows]: [&str; 2],
    postgres: &str,
    group: &str,
    ending: Ending,
) {
    let repartitioned = ending == Ending::Killed;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let input = input.to_str().unwrap();
    write_generated_json(COLUMNS, input, EVENTS, 300, 41).await;
    let produced = produce_by_user(servers, events, input);

    let profiles = unique("group_profiles").replace('-', "_");
    let pipeline = dir.path().join("pipeline.sql");
    std::fs::write(
        &pipeline,
        format!(
            "CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
               WITH (connector = 'kafka', topic = '{events}', 'bootstrap.servers' = '{servers}',
                     'scan.startup.mode' = 'earliest', format = 'json',
                     'key.fields' = 'user_id');
             CREATE TABLE windows (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
                 events BIGINT, spend DOUBLE, PRIMARY KEY (user_id, window_start))
               WITH (connector = 'kafka', topic = '{windows}', 'bootstrap.servers' = '{servers}',
                     format = 'json');
             INSERT INTO windows
             SELECT user_id, window_start, count(*), sum(amount)
               FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
               GROUP BY user_id, window_start, window_end;
             CREATE TABLE stored_windows (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
                 events BIGINT, spend DOUBLE, PRIMARY KEY (user_id, window_start))
               WITH (connector = 'postgres', url = '{postgres}', table = '{profiles}_windows');
             INSERT INTO stored_windows
             SELECT user_id, window_start, count(*), sum(amount)
               FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
               GROUP BY user_id, window_start, window_end;
             CREATE MATERIALIZED VIEW profiles PRIMARY KEY (user_id)
               WITH (connector = 'postgres', url = '{postgres}', table = '{profiles}') AS
             SELECT user_id, count(*) AS events, sum(amount) AS spend, max(ts) AS last_seen
               FROM events GROUP BY user_id;
             {}",
            if repartitioned {
                by_type(postgres, &profiles)
            } else {
                String::new()
            }
        ),
    )
    .unwrap();
    let checkpoints = dir.path().join("checkpoints");
    // A member that has left says so; one killed is missed after its session timeout.
    let session_timeout = match ending {
        Ending::Interrupted => "30s",
        Ending::Killed => "6s",
    };
    let start = |name: &str| {
        Member::start(
            &pipeline,
            group,
            &checkpoints,
            dir.path(),
            name,
            session_timeout,
        )
    };

    let mut members = vec![start("first"), start("second"), start("third")];
    tokio::time::sleep(Duration::from_secs(4)).await;
    let leaving = members.remove(0);
    match ending {
        Ending::Interrupted => leaving.interrupt(),
        Ending::Killed => leaving.kill(),
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    members.push(start("fourth"));

    // The broker's own acknowledgements are trusted only where they hold: see the header.
    let check_topic = ending == Ending::Killed;
    let expected = expected(input, repartitioned).await;
    let deadline = Instant::now() + Duration::from_secs(150);
    let stored = || stored_results(servers, windows, postgres, &profiles, repartitioned);
    let mut actual = stored().await;
    while !actual.equal(&expected, check_topic) && Instant::now() < deadline {
        for member in &mut members {
            member.check_running(dir.path());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        actual = stored().await;
    }
    for member in members {
        member.interrupt();
    }
    report(&expected, &actual);
    // The members commit what their tasks settled to the group, for Kafka's lag tools.
    let committed = committed(servers, group, events, PARTITIONS);
    if ending == Ending::Killed {
        for (partition, (committed, produced)) in committed.iter().zip(&produced).enumerate() {
            assert!(
                matches!(committed, Offset::Offset(n) if *n > 0 && *n <= *produced),
                "partition {partition}: committed {committed:?} of {produced} messages"
            );
        }
    }
    println!("logs kept in {}", dir.keep().display());
    assert_eq!(
        expected.profiles, actual.profiles,
        "profiles differ ({ending:?})"
    );
    assert_eq!(
        expected.windows, actual.windows,
        "windows differ ({ending:?})"
    );
    if check_topic {
        assert_eq!(
            expected.topic_windows, actual.topic_windows,
            "windows in the topic differ ({ending:?})"
        );
    }
    assert_eq!(
        expected.by_type, actual.by_type,
        "windows by event type differ ({ending:?})"
    );
    assert_eq!(
        expected.type_totals, actual.type_totals,
        "the view by event type differs ({ending:?})"
    );
}

/// Windows and a view by event type, which the topic is not keyed by: each goes through a
/// repartition topic of its own, named after what it writes.
fn by_type(postgres: &str, profiles: &str) -> String {
    format!(
        "CREATE TABLE by_type (event_type TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
             events BIGINT, spend DOUBLE, PRIMARY KEY (event_type, window_start))
           WITH (connector = 'postgres', url = '{postgres}', table = '{profiles}_by_type');
         INSERT INTO by_type
         SELECT event_type, window_start, count(*), sum(amount)
           FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
           GROUP BY event_type, window_start, window_end;
         CREATE MATERIALIZED VIEW type_totals PRIMARY KEY (event_type)
           WITH (connector = 'postgres', url = '{postgres}', table = '{profiles}_types') AS
         SELECT event_type, count(*) AS events, sum(amount) AS spend
           FROM events GROUP BY event_type;"
    )
}

/// A `profusion run --group` process.
struct Member {
    name: String,
    child: Child,
}

impl Member {
    fn start(
        pipeline: &Path,
        group: &str,
        checkpoints: &Path,
        logs: &Path,
        name: &str,
        session_timeout: &str,
    ) -> Self {
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_profusion"))
            .arg("run")
            .arg(pipeline)
            .args(["--group", group, "--session-timeout", session_timeout])
            .arg("--checkpoint-dir")
            .arg(checkpoints)
            .args(["--checkpoint-interval", "500ms", "--quiet"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            name: name.to_string(),
            child,
        }
    }

    /// Ctrl-C, and waits until the process has left the group.
    fn interrupt(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// SIGKILL: no flush, no final checkpoint, no goodbye to the group.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Fails the test, with the process's log, if it has ended by itself.
    fn check_running(&mut self, logs: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(logs.join(format!("{}.log", self.name)));
            panic!(
                "process {} ended by itself ({status}):\n{}",
                self.name,
                log.unwrap_or_default()
            );
        }
    }
}

/// Writes each event of the JSON lines at `path` to the partition its user hashes to (a
/// user's events stay in one partition, in order), one record per batch (the test broker
/// answers a fetch from inside a batch with the next batch), then a sentinel an hour later
/// in each partition, which closes every window of the data.
/// Returns how many messages each partition got.
fn produce_by_user(servers: &str, topic: &str, path: &str) -> Vec<i64> {
    let mut counts = vec![1; PARTITIONS as usize];
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let user = line
            .split("\"user_id\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no user_id in {line}"));
        let partition = user
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31) ^ b as u32);
        let partition = (partition % PARTITIONS as u32) as i32;
        counts[partition as usize] += 1;
        send(&producer, topic, partition, line);
    }
    for partition in 0..PARTITIONS {
        let sentinel = format!(
            r#"{{"user_id": "sentinel-{partition}", "event_id": "s{partition}", "event_type": "sentinel", "amount": 0, "ts": "2026-01-02T00:00:00Z"}}"#
        );
        send(&producer, topic, partition, &sentinel);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    counts
}

/// Profiles and windows as sorted text.
#[derive(Debug, PartialEq)]
struct Results {
    profiles: Vec<String>,
    /// The windows in PostgreSQL.
    windows: Vec<String>,
    /// The distinct windows in the Kafka topic.
    topic_windows: Vec<String>,
    /// Windows by event type, and the view by event type (through repartition topics).
    by_type: Vec<String>,
    type_totals: Vec<String>,
}

impl Results {
    /// True when `self` holds the `expected` results; the Kafka topic only with `topic`.
    fn equal(&self, expected: &Results, topic: bool) -> bool {
        self.profiles == expected.profiles
            && self.windows == expected.windows
            && (!topic || self.topic_windows == expected.topic_windows)
            && self.by_type == expected.by_type
            && self.type_totals == expected.type_totals
    }
}

async fn expected(input: &str, repartitioned: bool) -> Results {
    let windows = batch_over_json(
        COLUMNS,
        input,
        "SELECT user_id, date_bin(INTERVAL '1 minute', ts), count(*), round(sum(amount), 4)
         FROM events GROUP BY user_id, date_bin(INTERVAL '1 minute', ts)",
    )
    .await;
    Results {
        profiles: batch_over_json(
            COLUMNS,
            input,
            "SELECT user_id, count(*), round(sum(amount), 4), date_trunc('millisecond', max(ts))
             FROM events GROUP BY user_id",
        )
        .await,
        topic_windows: windows.clone(),
        windows,
        by_type: match repartitioned {
            true => {
                batch_over_json(
                    COLUMNS,
                    input,
                    "SELECT event_type, date_bin(INTERVAL '1 minute', ts), count(*),
                            round(sum(amount), 4)
                     FROM events GROUP BY event_type, date_bin(INTERVAL '1 minute', ts)",
                )
                .await
            }
            false => Vec::new(),
        },
        type_totals: match repartitioned {
            true => {
                batch_over_json(
                    COLUMNS,
                    input,
                    "SELECT event_type, count(*), round(sum(amount), 4)
                     FROM events GROUP BY event_type",
                )
                .await
            }
            false => Vec::new(),
        },
    }
}

/// What the view holds (read through a view of the same shape over an empty table), and
/// the distinct windows in the topic (a window written twice
/// holds the same values both times), sentinels left out.
async fn stored_results(
    servers: &str,
    windows: &str,
    postgres: &str,
    profiles: &str,
    repartitioned: bool,
) -> Results {
    let engine = Engine::new(&SessionOptions {
        reads: SourceReads::Snapshot,
        ..SessionOptions::default()
    })
    .unwrap();
    let setup = format!(
        "CREATE TABLE stream ({COLUMNS}) WITH (connector = 'memory');
         CREATE MATERIALIZED VIEW stored PRIMARY KEY (user_id)
           WITH (connector = 'postgres', url = '{postgres}', table = '{profiles}') AS
         SELECT user_id, count(*) AS events, sum(amount) AS spend, max(ts) AS last_seen
           FROM stream GROUP BY user_id;
         CREATE TABLE stored_windows (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
             events BIGINT, spend DOUBLE, PRIMARY KEY (user_id, window_start))
           WITH (connector = 'postgres', url = '{postgres}', table = '{profiles}_windows');
         CREATE TABLE written (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
             events BIGINT, spend DOUBLE)
           WITH (connector = 'kafka', topic = '{windows}', 'bootstrap.servers' = '{servers}',
                 format = 'json');
         CREATE TABLE by_type (event_type TEXT NOT NULL, window_start TIMESTAMP NOT NULL,
             events BIGINT, spend DOUBLE, PRIMARY KEY (event_type, window_start))
           WITH (connector = 'postgres', url = '{postgres}', table = '{profiles}_by_type');
         CREATE MATERIALIZED VIEW type_totals PRIMARY KEY (event_type)
           WITH (connector = 'postgres', url = '{postgres}', table = '{profiles}_types') AS
         SELECT event_type, count(*) AS events, sum(amount) AS spend
           FROM stream GROUP BY event_type;"
    );
    for statement in parse_pipeline(&setup).unwrap() {
        engine.submit(statement).await.unwrap();
    }
    let rows = |sql: &str| {
        let engine = engine.clone();
        let sql = sql.to_string();
        async move {
            match engine.context().sql(&sql).await {
                Ok(frame) => frame.collect().await.map(|b| lines(&b)).unwrap_or_default(),
                // The view's table appears with its first upsert.
                Err(_) => Vec::new(),
            }
        }
    };
    Results {
        profiles: rows(
            "SELECT user_id, events, round(spend, 4), date_trunc('millisecond', last_seen) FROM stored
             WHERE user_id NOT LIKE 'sentinel%'",
        )
        .await,
        windows: rows(
            "SELECT user_id, window_start, events, round(spend, 4) FROM stored_windows
             WHERE user_id NOT LIKE 'sentinel%'",
        )
        .await,
        topic_windows: rows(
            "SELECT DISTINCT user_id, window_start, events, round(spend, 4) FROM written
             WHERE user_id NOT LIKE 'sentinel%'",
        )
        .await,
        by_type: match repartitioned {
            true => {
                rows(
                    "SELECT event_type, window_start, events, round(spend, 4) FROM by_type
                     WHERE event_type <> 'sentinel'",
                )
                .await
            }
            false => Vec::new(),
        },
        type_totals: match repartitioned {
            true => {
                rows(
                    "SELECT event_type, events, round(spend, 4) FROM type_totals
                     WHERE event_type <> 'sentinel'",
                )
                .await
            }
            false => Vec::new(),
        },
    }
}

/// Prints a few rows of each difference, to tell a lost key from a doubled count.
fn report(expected: &Results, actual: &Results) {
    print_difference("profiles", &expected.profiles, &actual.profiles);
    print_difference("windows", &expected.windows, &actual.windows);
    print_difference(
        "windows in the topic",
        &expected.topic_windows,
        &actual.topic_windows,
    );
    print_difference("windows by type", &expected.by_type, &actual.by_type);
    print_difference("view by type", &expected.type_totals, &actual.type_totals);
}

/// What one machine keeps to itself cannot be shared: a view in SQLite is refused, and
/// the error says what to use instead; so is a stream that is not a Kafka topic.
#[tokio::test]
async fn a_group_refuses_stores_and_streams_of_one_machine() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profiles.db");
    let table = |name: &str, extra: &str| {
        format!(
            "CREATE TABLE {name} ({COLUMNS}, WATERMARK FOR ts AS ts)
               WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '127.0.0.1:1'{extra});"
        )
    };
    let events = table("events", ", 'key.fields' = 'user_id'");
    let refused = |text: String| {
        let options = group_options("shared", &dir.path().join("checkpoints"));
        async move {
            match profusion::pipeline::group::GroupRun::load(
                &text,
                &SessionOptions::default(),
                options,
            )
            .await
            {
                Ok(_) => panic!("accepted: {text}"),
                Err(error) => error.to_string(),
            }
        }
    };
    let sqlite = refused(format!(
        "{events}
         CREATE MATERIALIZED VIEW profiles PRIMARY KEY (user_id)
           WITH (connector = 'sqlite', path = '{}') AS
         SELECT user_id, count(*) AS events FROM events GROUP BY user_id;",
        db.display()
    ))
    .await;
    assert!(
        sqlite.contains("view profiles is kept in sqlite"),
        "{sqlite}"
    );
    assert!(
        sqlite.contains("connector = 'postgres' or 'kafka'"),
        "{sqlite}"
    );
    let generated = refused(format!(
        "CREATE TABLE generated ({COLUMNS}) WITH (connector = 'datagen');
         CREATE TABLE out ({COLUMNS}) WITH (connector = 'stdout');
         INSERT INTO out SELECT * FROM generated;"
    ))
    .await;
    assert!(
        generated.contains("table generated (datagen"),
        "{generated}"
    );
    assert!(generated.contains("is not a Kafka topic"), "{generated}");
    // A Top-N over every row would be taken per partition.
    let total = refused(format!(
        "{events}
         CREATE TABLE top (user_id TEXT NOT NULL, amount DOUBLE, rank_number BIGINT NOT NULL,
             PRIMARY KEY (rank_number))
           WITH (connector = 'postgres', url = 'postgres://127.0.0.1:1/none', table = 'top');
         INSERT INTO top SELECT user_id, amount, rank_number FROM (
           SELECT *, ROW_NUMBER() OVER (ORDER BY amount DESC) AS rank_number FROM events)
         WHERE rank_number <= 3;"
    ))
    .await;
    assert!(
        total.contains("a total over every row of table events"),
        "{total}"
    );
    let per_window = refused(format!(
        "{events}
         CREATE TABLE totals (window_start TIMESTAMP NOT NULL, n BIGINT,
             PRIMARY KEY (window_start))
           WITH (connector = 'postgres', url = 'postgres://127.0.0.1:1/none', table = 'totals');
         INSERT INTO totals SELECT window_start, count(*)
           FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end;"
    ))
    .await;
    assert!(
        per_window.contains("a total over every row of table events"),
        "{per_window}"
    );
    // An INSERT into a table of this machine, and late rows into a file.
    let inserted = refused(format!(
        "{events}
         CREATE TABLE kept_here (user_id TEXT NOT NULL, n BIGINT, PRIMARY KEY (user_id))
           WITH (connector = 'sqlite', path = '{}', table = 'kept_here');
         INSERT INTO kept_here SELECT user_id, count(*) FROM events GROUP BY user_id;",
        db.display()
    ))
    .await;
    assert!(
        inserted.contains("the query writes to sqlite"),
        "{inserted}"
    );
    let late = dir.path().join("late.jsonl");
    let late_rows = refused(format!(
        "CREATE TABLE late ({COLUMNS}) WITH (connector = 'file', path = '{}', format = 'json');
         {}
         CREATE TABLE counts (user_id TEXT NOT NULL, window_start TIMESTAMP NOT NULL, n BIGINT,
             PRIMARY KEY (user_id, window_start))
           WITH (connector = 'postgres', url = 'postgres://127.0.0.1:1/none', table = 'counts');
         INSERT INTO counts SELECT user_id, window_start, count(*)
           FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY user_id, window_start, window_end;",
        late.display(),
        table("events", ", 'key.fields' = 'user_id', 'late_data.sink' = 'late'")
    ))
    .await;
    assert!(
        late_rows.contains("late rows (table late) go to a file"),
        "{late_rows}"
    );
    let latest = refused(format!(
        "{}
         CREATE MATERIALIZED VIEW profiles PRIMARY KEY (user_id)
           WITH (connector = 'postgres', url = 'postgres://127.0.0.1:1/none') AS
         SELECT user_id, count(*) AS events FROM events GROUP BY user_id;",
        table(
            "events",
            ", 'key.fields' = 'user_id', 'scan.startup.mode' = 'latest'"
        )
    ))
    .await;
    assert!(
        latest.contains("'scan.startup.mode' = 'latest'"),
        "{latest}"
    );
}

/// Keys the topic is not keyed by are accepted: each such operator reads its rows through a
/// repartition topic named after the group and what the job writes, placed where the plan
/// says (a window's under its window assignment, both inputs of a join through topics of
/// their own). An input that merges streams cannot be replayed in order, so it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_topic_is_not_keyed_by_go_through_repartition_topics() {
    let cluster = MockCluster::new(1).unwrap();
    for topic in ["events", "clicks"] {
        cluster.create_topic(topic, PARTITIONS, 1).unwrap();
    }
    let servers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let table = |name: &str, extra: &str| {
        format!(
            "CREATE TABLE {name} ({COLUMNS}, WATERMARK FOR ts AS ts)
               WITH (connector = 'kafka', topic = '{name}', 'bootstrap.servers' = '{servers}'{extra});"
        )
    };
    let keyed = table("events", ", 'key.fields' = 'user_id'");
    let sink = |name: &str, columns: &str| {
        format!(
            "CREATE TABLE {name} ({columns})
               WITH (connector = 'postgres', url = 'postgres://127.0.0.1:1/none', table = '{name}');"
        )
    };
    let counts = sink("counts", "k TEXT NOT NULL, n BIGINT, PRIMARY KEY (k)");
    // Each case: the pipeline, the topics it goes through, and the plan's operators from the
    // top, in order (each the first line naming it at or after the one before).
    let cases = [
        (
            "by_event",
            format!(
                "{keyed} {counts}
                 INSERT INTO counts SELECT event_id, count(*) FROM events GROUP BY event_id;"
            ),
            vec!["counts"],
            vec!["UpsertAggregateExec", "RepartitionTopicExec", "SourceExec"],
        ),
        (
            "renamed",
            format!(
                "{keyed} {counts}
                 INSERT INTO counts SELECT user_id, count(*)
                   FROM (SELECT event_id AS user_id FROM events) GROUP BY user_id;"
            ),
            vec!["counts"],
            vec!["RepartitionTopicExec"],
        ),
        (
            "expression",
            format!(
                "{keyed} {counts}
                 INSERT INTO counts SELECT lower(event_type), count(*) FROM events
                   GROUP BY lower(event_type);"
            ),
            vec!["counts"],
            vec!["RepartitionTopicExec: topic=expression-counts-repartition, hash=[lower("],
        ),
        (
            "unkeyed",
            format!(
                "{}
                 CREATE MATERIALIZED VIEW profiles PRIMARY KEY (user_id)
                   WITH (connector = 'postgres', url = 'postgres://127.0.0.1:1/none') AS
                 SELECT user_id, count(*) AS events FROM events GROUP BY user_id;",
                table("events", "")
            ),
            vec!["profiles"],
            vec!["RepartitionTopicExec"],
        ),
        (
            "windows",
            format!(
                "{keyed} {}
                 INSERT INTO by_type SELECT event_type, window_start, count(*)
                   FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
                   GROUP BY event_type, window_start, window_end;",
                sink(
                    "by_type",
                    "event_type TEXT NOT NULL, window_start TIMESTAMP NOT NULL, n BIGINT, \
                     PRIMARY KEY (event_type, window_start)"
                )
            ),
            vec!["by_type"],
            vec![
                "WindowAggregateExec",
                "WindowAssignExec",
                "RepartitionTopicExec: topic=windows-by_type-repartition, hash=[event_type@",
            ],
        ),
        (
            "joined",
            format!(
                "{keyed} {} {}
                 INSERT INTO pairs SELECT e.event_id, c.ts
                   FROM events e JOIN clicks c ON c.event_id = e.event_id
                     AND c.ts BETWEEN e.ts AND e.ts + INTERVAL '1' MINUTE;",
                table("clicks", ", 'key.fields' = 'user_id'"),
                sink("pairs", "event_id TEXT NOT NULL, ts TIMESTAMP NOT NULL")
            ),
            vec!["pairs", "pairs-2"],
            vec![
                "IntervalJoinExec",
                "RepartitionTopicExec",
                "RepartitionTopicExec",
            ],
        ),
        (
            "twice",
            format!(
                "{keyed} {counts}
                 INSERT INTO counts SELECT event_id, count(*) FROM events GROUP BY event_id;
                 INSERT INTO counts SELECT event_type, count(*) FROM events GROUP BY event_type;"
            ),
            vec!["counts", "counts-line5"],
            vec![],
        ),
    ];
    for (group, text, jobs, operators) in cases {
        let expected: Vec<String> = jobs
            .iter()
            .map(|job| match job.strip_suffix("-2") {
                Some(job) => format!("{group}-{job}-repartition-2"),
                None => match job.split_once("-line") {
                    Some((job, line)) => format!("{group}-{job}-line{line}-repartition"),
                    None => format!("{group}-{job}-repartition"),
                },
            })
            .collect();
        // The mock cluster cannot create topics on request.
        for topic in &expected {
            cluster.create_topic(topic, PARTITIONS, 1).unwrap();
        }
        let options = group_options(group, &dir.path().join(group));
        let run =
            profusion::pipeline::group::GroupRun::load(&text, &SessionOptions::default(), options)
                .await
                .unwrap_or_else(|e| panic!("{group}: {e}"));
        let topics: Vec<String> = run.plan().topics.iter().map(|t| t.name.clone()).collect();
        assert_eq!(topics, expected, "{group}");
        let plan = run
            .jobs()
            .iter()
            .map(|job| {
                datafusion::physical_plan::displayable(job.plan.as_ref())
                    .indent(false)
                    .to_string()
            })
            .collect::<String>();
        let mut from = 0;
        for operator in operators {
            let Some(at) = plan[from..].find(operator) else {
                panic!("{group}: no {operator} after the operators before it in\n{plan}");
            };
            from += at + operator.len();
        }
    }
    // A union of two topics interleaves as they arrive: a restored task could not send its
    // rows in the same order again.
    let union = format!(
        "{keyed} {} {counts}
         INSERT INTO counts SELECT event_type, count(*)
           FROM (SELECT * FROM events UNION ALL SELECT * FROM clicks) GROUP BY event_type;",
        table("clicks", ", 'key.fields' = 'user_id'")
    );
    let options = group_options("union", &dir.path().join("union"));
    let refused =
        profusion::pipeline::group::GroupRun::load(&union, &SessionOptions::default(), options)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
    assert!(refused.contains("merges streams"), "{refused}");
}

/// The first process of a group creates its repartition topics, with the source topics'
/// partitions; the others find them there, and the group's lineage with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_creates_its_repartition_topics_on_the_broker() {
    let Some(servers) = test_broker() else {
        return;
    };
    let events = unique("repartitioned-events");
    create_topics(&servers, &[(&events, 3)]).await;
    let dir = tempfile::tempdir().unwrap();
    let group = unique("group");
    let text = format!(
        "CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts)
           WITH (connector = 'kafka', topic = '{events}', 'bootstrap.servers' = '{servers}',
                 'key.fields' = 'user_id');
         CREATE TABLE counts (event_type TEXT NOT NULL, n BIGINT, PRIMARY KEY (event_type))
           WITH (connector = 'postgres', url = 'postgres://127.0.0.1:1/none', table = 'c');
         INSERT INTO counts SELECT event_type, count(*) FROM events GROUP BY event_type;"
    );
    let mut lineages = Vec::new();
    for _process in 0..2 {
        let options = group_options(&group, dir.path());
        let run =
            profusion::pipeline::group::GroupRun::load(&text, &SessionOptions::default(), options)
                .await
                .unwrap();
        lineages.push(run.plan().topics[0].lineage);
    }
    // Both processes tag their frames with the lineage the first drew.
    assert_eq!(lineages[0], lineages[1]);
    let topic = format!("{group}-counts-repartition");
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .unwrap();
    let metadata = rdkafka::consumer::Consumer::fetch_metadata(
        &consumer,
        Some(&topic),
        Duration::from_secs(10),
    )
    .unwrap();
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap();
    assert_eq!(found.partitions().len(), 3, "{topic}");
}

/// `serve --group` on two processes sharing a pipeline: each answers every user's profile,
/// the users whose partitions the other process holds included, read from the shared
/// PostgreSQL store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_of_a_group_answers_every_key_from_the_shared_store() {
    let Some(postgres) = test_postgres() else {
        return;
    };
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", PARTITIONS, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let input = input.to_str().unwrap();
    write_generated_json(COLUMNS, input, 2_000, 40, 43).await;
    produce_by_user(&servers, "events", input);
    let expected = batch_over_json(
        COLUMNS,
        input,
        "SELECT user_id, count(*) FROM events GROUP BY user_id",
    )
    .await;
    let profiles = unique("served_profiles").replace('-', "_");
    let pipeline = format!(
        "CREATE TABLE events ({COLUMNS})
           WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{servers}',
                 format = 'json', 'key.fields' = 'user_id');
         CREATE MATERIALIZED VIEW profiles PRIMARY KEY (user_id)
           WITH (connector = 'postgres', url = '{postgres}', table = '{profiles}') AS
         SELECT user_id, count(*) AS events FROM events GROUP BY user_id;"
    );
    let group = unique("served");
    let checkpoints = dir.path().join("checkpoints");
    let args = [
        "--group",
        group.as_str(),
        "--checkpoint-dir",
        checkpoints.to_str().unwrap(),
    ];
    let first_dir = dir.path().join("first");
    let second_dir = dir.path().join("second");
    std::fs::create_dir_all(&first_dir).unwrap();
    std::fs::create_dir_all(&second_dir).unwrap();
    let first = Server::start_with(&first_dir, &pipeline, &[], &args);
    let second = Server::start_with(&second_dir, &pipeline, &[], &args);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut answered = Vec::new();
    for server in [&first, &second] {
        for row in &expected {
            let (user, count) = row.split_once(" | ").unwrap();
            loop {
                let (status, body) = server
                    .get(&format!("/v1/views/profiles/{user}"), Some(READ_TOKEN))
                    .await;
                let events = (status == 200).then(|| field(&body, &["row", "events"]));
                if events.as_ref().and_then(|e| e.as_i64()) == count.parse().ok() {
                    answered.push(format!("{user} | {count}"));
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} never answered {user} with {count} events: {status} {body}\n{}",
                    server.url,
                    server.log.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert_eq!(answered.len(), 2 * expected.len());
    let logs = [first.stop(), second.stop()];
    let assigned: Vec<&str> = logs
        .iter()
        .filter_map(|log| log.lines().find(|l| l.contains("assigned partitions")))
        .collect();
    assert_eq!(assigned.len(), 2, "both servers held partitions: {logs:#?}");
}

/// The pipeline in the Kubernetes example (deploy/kubernetes/profusion.yaml) plans as
/// written.
#[tokio::test]
async fn the_kubernetes_example_pipeline_plans() {
    let manifest =
        std::fs::read_to_string(common::repository_path("deploy/kubernetes/profusion.yaml"))
            .unwrap();
    let (_, rest) = manifest.split_once("pipeline.sql: |\n").unwrap();
    let pipeline: String = rest
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .map(|line| format!("{}\n", line.trim_start()))
        .collect();
    let loaded = profusion::Pipeline::load(&pipeline, &SessionOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{pipeline}"));
    assert_eq!(loaded.jobs().len(), 1, "{pipeline}");
}

/// `--memory-limit` is the process's: every task it runs draws on one pool.
#[tokio::test]
async fn the_tasks_of_one_process_share_its_memory_limit() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events", 2, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = format!(
        "CREATE TABLE events ({COLUMNS})
           WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{servers}',
                 format = 'json', 'key.fields' = 'user_id');
         CREATE TABLE counts (user_id TEXT NOT NULL, n BIGINT, PRIMARY KEY (user_id))
           WITH (connector = 'postgres', url = 'postgres://127.0.0.1:1/none', table = 'counts');
         INSERT INTO counts SELECT user_id, count(*) FROM events GROUP BY user_id;"
    );
    let session = SessionOptions {
        memory_limit: Some(64 << 20),
        ..SessionOptions::default()
    };
    let options = group_options("shared", dir.path());
    let run = profusion::pipeline::group::GroupRun::load(&pipeline, &session, options)
        .await
        .unwrap();
    let mut pools = Vec::new();
    for partition in 0..2 {
        let task = profusion::Pipeline::load(&pipeline, &run.session_of(partition))
            .await
            .unwrap();
        pools.push(Arc::clone(
            &task.engine().context().runtime_env().memory_pool,
        ));
    }
    assert!(Arc::ptr_eq(&pools[0], &pools[1]));
    assert!(matches!(
        pools[0].memory_limit(),
        datafusion::execution::memory_pool::MemoryLimit::Finite(limit) if limit == 64 << 20
    ));
}
