//! The UDF library's aggregates, a Top-N and a window keep their state across a crash: a
//! profile view of `decayed_sum`, `session_count` and `top_k`, a view of the three largest
//! purchases per page (`ROW_NUMBER`) and a view of per-user 10-second windows, whose
//! `profusion run --checkpoint-dir` process is killed twice and restarted from its latest
//! checkpoint end with exactly the rows of the same pipeline run straight through; also
//! when each restart runs on another number of workers than the run before it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The pipeline, writing its view into the SQLite file `db`: 6,000 generated events at
/// 2,000 a second, so a run can be killed part-way.
fn pipeline(db: &Path) -> String {
    format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, page TEXT, amount DOUBLE, ts TIMESTAMP NOT NULL,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'datagen', count = 6000, rows_per_second = 2000, users = 40, seed = 5,
               out_of_order = '1s', step = '250ms', batch_size = 100);
         CREATE MATERIALIZED VIEW behaviour PRIMARY KEY (user_id)
         WITH (connector = 'sqlite', path = '{0}') AS
         SELECT user_id, count(*) AS events,
                decayed_sum(amount, ts, INTERVAL '1' MINUTE) AS recent_spend,
                decayed_count(ts, INTERVAL '30' SECOND) AS recent_events,
                session_count(ts, INTERVAL '20' SECOND) AS sessions,
                top_k(page, 2) AS pages
         FROM events GROUP BY user_id;
         CREATE MATERIALIZED VIEW top_purchases PRIMARY KEY (page, rank)
         WITH (connector = 'sqlite', path = '{0}') AS
         SELECT page, rank, user_id, amount FROM (
           SELECT page, user_id, amount,
                  ROW_NUMBER() OVER (PARTITION BY page ORDER BY amount DESC, ts) AS rank
           FROM events WHERE amount IS NOT NULL)
         WHERE rank <= 3;
         CREATE MATERIALIZED VIEW activity PRIMARY KEY (user_id, window_start)
         WITH (connector = 'sqlite', path = '{0}') AS
         SELECT user_id, window_start, count(*) AS events, max(amount) AS largest
         FROM TUMBLE(events, ts, INTERVAL '10' SECOND)
         GROUP BY user_id, window_start, window_end;",
        db.display()
    )
}

fn run(pipeline: &Path, checkpoints: Option<&Path>, workers: usize) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_profusion"));
    command
        .arg("run")
        .arg(pipeline)
        .arg("--quiet")
        .args(["--workers", &workers.to_string()]);
    if let Some(dir) = checkpoints {
        command
            .arg("--checkpoint-dir")
            .arg(dir)
            .args(["--checkpoint-interval", "200ms"]);
    }
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every row of `query`, as text.
/// The epoch of the latest complete checkpoint (its manifest written) in `dir`; 0 if none.
fn latest_checkpoint(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join("_manifest.json").exists())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn rows(db: &Path, query: &str) -> Vec<String> {
    let connection = rusqlite::Connection::open(db).unwrap();
    let mut statement = connection.prepare(query).unwrap();
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            (0..columns)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                        other => format!("{other:?}"),
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(|cells| cells.join(" "))
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
}

/// Runs the pipeline straight through, then killed twice and restored, the runs on
/// `workers[0]`, `workers[1]` and `workers[2]` workers; the views must end equal.
fn killed_and_restored(workers: [usize; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let straight_db = dir.path().join("straight.db");
    let straight = dir.path().join("straight.sql");
    std::fs::write(&straight, pipeline(&straight_db)).unwrap();
    assert!(run(&straight, None, 2).wait().unwrap().success());

    let restored_db = dir.path().join("restored.db");
    let restored = dir.path().join("restored.sql");
    std::fs::write(&restored, pipeline(&restored_db)).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    for workers in &workers[..2] {
        let mut child = run(&restored, Some(&checkpoints), *workers);
        // Killed once it has completed a checkpoint of its own, on its number of workers.
        let before = latest_checkpoint(&checkpoints);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while latest_checkpoint(&checkpoints) <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint on {workers} workers"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // SIGKILL: no flush, no final checkpoint.
        let _ = child.kill();
        let _ = child.wait();
    }
    // The last run resumes from a checkpoint, not from the start.
    let listing = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["checkpoints", "list"])
        .arg(&checkpoints)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("complete"), "{listing}");
    let last = run(&restored, Some(&checkpoints), workers[2]);
    assert!(last.wait_with_output().unwrap().status.success());

    // Without `_version` and `_updated_at`, which say when a row was written.
    let behaviour = "SELECT user_id, events, recent_spend, recent_events, sessions, pages
                     FROM behaviour ORDER BY user_id";
    let expected = rows(&straight_db, behaviour);
    assert_eq!(expected.len(), 40, "{expected:?}");
    assert_eq!(
        rows(&restored_db, behaviour),
        expected,
        "on {workers:?} workers"
    );
    let top = "SELECT page, rank, user_id, amount FROM top_purchases ORDER BY page, rank";
    let expected = rows(&straight_db, top);
    assert!(expected.len() >= 3, "{expected:?}");
    assert_eq!(rows(&restored_db, top), expected, "on {workers:?} workers");
    let activity = "SELECT user_id, window_start, events, largest FROM activity
                    ORDER BY user_id, window_start";
    let expected = rows(&straight_db, activity);
    assert!(expected.len() > 40, "{expected:?}");
    assert_eq!(
        rows(&restored_db, activity),
        expected,
        "on {workers:?} workers"
    );
}

#[test]
fn killed_and_restored_the_view_equals_a_straight_run() {
    killed_and_restored([2, 2, 2]);
}

#[test]
fn restored_on_another_number_of_workers_the_views_equal_a_straight_run() {
    killed_and_restored([2, 3, 1]);
}

#[test]
fn restored_on_fewer_workers_the_views_equal_a_straight_run() {
    killed_and_restored([3, 2, 2]);
}
