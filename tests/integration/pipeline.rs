//! Running pipelines: files in and out, stopping, memory limits, error positions, and
//! late-row counting.

use std::time::Duration;

use crate::common;

use profusion::sql::parse_pipeline;
use profusion::{Engine, Pipeline, SessionOptions};

const COLUMNS: &str =
    "user_id TEXT NOT NULL, event_type TEXT, amount DOUBLE, ts TIMESTAMP NOT NULL";

async fn run(text: &str) -> profusion::RunSummary {
    Pipeline::load(text, &SessionOptions::default())
        .await
        .unwrap()
        .run()
        .await
        .unwrap()
}

/// Runs `query` after `setup` and returns its rows as text.
async fn query(setup: &str, query: &str) -> Vec<String> {
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    let mut rows = Vec::new();
    for statement in parse_pipeline(&format!("{setup}; {query}")).unwrap() {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            let batches = engine.collect(&job).await.unwrap();
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap();
            rows = text.to_string().lines().map(str::to_string).collect();
        }
    }
    rows
}

#[tokio::test]
async fn files_round_trip_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["json", "csv", "parquet"] {
        let path = dir.path().join(format!("events.{format}"));
        let path = path.display();
        run(&format!(
            "CREATE TABLE generated ({COLUMNS}) WITH (connector = 'datagen', count = 1000, seed = 5);
             CREATE TABLE out ({COLUMNS}) WITH (connector = 'file', path = '{path}', format = '{format}');
             INSERT INTO out SELECT * FROM generated;"
        ))
        .await;
        let rows = query(
            &format!("CREATE TABLE back ({COLUMNS}) WITH (connector = 'file', path = '{path}', format = '{format}')"),
            "SELECT count(*) AS n, count(DISTINCT user_id) AS u, min(ts) AS lo, max(ts) AS hi, round(sum(amount), 2) AS s FROM back",
        )
        .await;
        let expected = query(
            &format!("CREATE TABLE generated ({COLUMNS}) WITH (connector = 'datagen', count = 1000, seed = 5)"),
            "SELECT count(*) AS n, count(DISTINCT user_id) AS u, min(ts) AS lo, max(ts) AS hi, round(sum(amount), 2) AS s FROM generated",
        )
        .await;
        assert_eq!(rows, expected, "{format}");
    }
}

#[tokio::test]
async fn json_sink_writes_timestamps_as_iso_strings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    run(&format!(
        "CREATE TABLE generated (event_id TEXT, ts TIMESTAMP) WITH (connector = 'datagen', count = 2, start = '2026-03-01T12:00:00Z', step = '1.5s');
         CREATE TABLE out (event_id TEXT, ts TIMESTAMP) WITH (connector = 'file', path = '{}', format = 'json');
         INSERT INTO out SELECT * FROM generated;",
        path.display()
    ))
    .await;
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"event_id\":\"e0000000000\",\"ts\":\"2026-03-01T12:00:00\"}\n{\"event_id\":\"e0000000001\",\"ts\":\"2026-03-01T12:00:01.500\"}\n"
    );
}

#[tokio::test]
async fn a_file_source_reads_every_file_of_a_folder_as_a_split() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.json"), "{\"n\": 1}\n{\"n\": 2}\n").unwrap();
    std::fs::write(dir.path().join("b.json"), "{\"n\": 40}\n").unwrap();
    let rows = query(
        &format!(
            "CREATE TABLE t (n INT) WITH (connector = 'file', path = '{}', format = 'json')",
            dir.path().display()
        ),
        "SELECT sum(n) FROM t",
    )
    .await;
    assert!(rows.iter().any(|r| r.contains("| 43 ")), "{rows:?}");
}

#[tokio::test]
async fn a_folder_of_more_files_than_readers_is_read_whole() {
    // Files are read a few at a time, each on a thread of its own, with large blocks: 12
    // files of 20,000 rows (over 5 MB each, more than a block) all arrive.
    let dir = tempfile::tempdir().unwrap();
    let mut expected = 0u64;
    for file in 0..12u64 {
        let lines: String = (0..20_000u64)
            .map(|n| {
                format!(
                    "{{\"n\": {}, \"pad\": \"{}\"}}\n",
                    file * n,
                    "x".repeat(240)
                )
            })
            .collect();
        expected += (0..20_000u64).map(|n| file * n).sum::<u64>();
        std::fs::write(dir.path().join(format!("{file:02}.json")), lines).unwrap();
    }
    let rows = query(
        &format!(
            "CREATE TABLE t (n BIGINT, pad TEXT) WITH (connector = 'file', path = '{}', format = 'json')",
            dir.path().display()
        ),
        "SELECT count(*) AS rows, sum(n) AS total FROM t",
    )
    .await;
    assert!(
        rows.iter()
            .any(|r| r.contains("| 240000 ") && r.contains(&format!("| {expected} "))),
        "{rows:?}"
    );
}

#[tokio::test]
async fn late_rows_are_counted() {
    let summary = run(&format!(
        "CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
           WITH (connector = 'datagen', count = 20000, seed = 3, late_rate = 0.01, late_by = '10m');
         CREATE TABLE out (user_id TEXT, n BIGINT) WITH (connector = 'memory');
         INSERT INTO out SELECT user_id, count(*) FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
           GROUP BY user_id, window_start, window_end;"
    ))
    .await;
    assert_eq!(summary.events_in, 20000);
    // Late rows are 10 minutes behind; only those in the first 10 minutes of event time
    // (here, all 20 s of it) still fall before the first window: none of them count as late.
    assert!(summary.late_rows > 100, "{summary:?}");
    assert!(summary.late_rows < 400, "{summary:?}");
}

#[tokio::test]
async fn a_stop_ends_an_endless_pipeline_cleanly_without_emitting_open_windows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("windows.jsonl");
    let pipeline = Pipeline::load(
        &format!(
            "CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts)
               WITH (connector = 'datagen', rows_per_second = 2000, step = '1s');
             CREATE TABLE out (window_start TIMESTAMP, n BIGINT) WITH (connector = 'file', path = '{}', format = 'json');
             INSERT INTO out SELECT window_start, count(*) FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
               GROUP BY window_start, window_end;",
            path.display()
        ),
        &SessionOptions::default(),
    )
    .await
    .unwrap();
    let shared = std::sync::Arc::clone(pipeline.engine().shared());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        shared.stop.stop();
    });
    let summary = pipeline.run().await.unwrap();
    assert!(summary.stopped);
    assert!(summary.events_in >= 600, "{summary:?}");
    // Every emitted window is complete: 60 rows, one per second of event time.
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.lines().count() >= 10, "{written}");
    for line in written.lines() {
        assert!(line.ends_with("\"n\":60}"), "{line}");
    }
}

#[tokio::test]
async fn window_state_over_the_memory_limit_is_a_clear_error() {
    let pipeline = Pipeline::load(
        &format!(
            "CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts)
               WITH (connector = 'datagen', count = 300000, users = 200000, step = '1us');
             SELECT user_id, count(*) FROM TUMBLE(events, ts, INTERVAL '1' HOUR)
               GROUP BY user_id, window_start, window_end;"
        ),
        &SessionOptions {
            memory_limit: Some(4 << 20),
            ..SessionOptions::default()
        },
    )
    .await
    .unwrap();
    let error = pipeline.run().await.unwrap_err().to_string();
    assert!(
        error.contains("window state of TUMBLE(events, …) needs")
            && error.contains("over the memory limit"),
        "{error}"
    );
}

#[tokio::test]
async fn errors_name_the_line_of_their_statement() {
    let text = "-- a pipeline\n\nCREATE TABLE events (ts TIMESTAMP)\n  WITH (connector = 'datagen', count = 10);\n\nCREATE TABLE out (ts TIMESTAMP)\n  WITH (connector = 'file', format = 'json');\n";
    let error = Pipeline::load(text, &SessionOptions::default())
        .await
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        error,
        "CREATE TABLE out (line 6): missing required option 'path'"
    );

    let text = "CREATE TABLE events (ts TIMESTAMP) WITH (connector = 'datagen', count = 10);\nSELECT nope\n  FROM events;";
    let error = Pipeline::load(text, &SessionOptions::default())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.starts_with("line 2: "), "{error}");
}

#[tokio::test]
async fn the_onboarding_pipeline_runs() {
    let text = std::fs::read_to_string(common::repository_path("sql/onboarding.sql")).unwrap();
    let pipeline = Pipeline::load(&text, &SessionOptions::default())
        .await
        .unwrap();
    assert!(pipeline.jobs().iter().all(|job| job.is_bounded()));
    let summary = pipeline.run().await.unwrap();
    assert!(summary.events_in > 0 && summary.rows_out > 0, "{summary:?}");
}

/// A job that fails stops the pipeline at once, whatever job comes before it in the file
/// and runs on: the failure is not left waiting behind a job that never ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_stops_the_pipeline_even_behind_one_that_never_ends() {
    let pipeline = "
        CREATE TABLE endless (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL)
          WITH (connector = 'datagen', rows_per_second = 100);
        CREATE TABLE nowhere (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL)
          WITH (connector = 'blackhole');
        INSERT INTO nowhere SELECT * FROM endless;
        CREATE TABLE unreachable (user_id TEXT NOT NULL, n BIGINT, PRIMARY KEY (user_id))
          WITH (connector = 'postgres', url = 'postgres://nobody@127.0.0.1:1/none',
                table = 'unreachable');
        INSERT INTO unreachable SELECT user_id, count(*) FROM endless GROUP BY user_id;";
    let ran = tokio::time::timeout(
        Duration::from_secs(60),
        common::try_run_pipeline(pipeline, &SessionOptions::default()),
    )
    .await
    .expect("the pipeline kept running after a job failed");
    let error = ran.expect_err("a job writing to an unreachable database cannot succeed");
    assert!(error.contains("127.0.0.1:1"), "{error}");
}
