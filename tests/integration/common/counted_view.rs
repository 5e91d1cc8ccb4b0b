//! A view of generated events counted per user in SQLite, for the tests that stop, damage
//! and restart a pipeline: the generator is deterministic, so a view that counted each
//! event once holds exactly what a straight run over as many events gives.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generated events at `per_second` (endless, or `count` of them), counted per user into
/// the view `spend` in the SQLite file `db`.
pub fn pipeline(db: &Path, count: Option<i64>, per_second: u32, users: u32) -> String {
    let count = count.map_or(String::new(), |n| format!("count = {n}, "));
    format!(
        "CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL,
           WATERMARK FOR ts AS ts)
         WITH (connector = 'datagen', {count}rows_per_second = {per_second}, users = {users},
               seed = 9, batch_size = 100);
         CREATE MATERIALIZED VIEW spend PRIMARY KEY (user_id)
         WITH (connector = 'sqlite', path = '{}') AS
         SELECT user_id, count(*) AS events, sum(amount) AS spend FROM events GROUP BY user_id;",
        db.display()
    )
}

/// The events the view at `db` has counted.
pub fn counted(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT coalesce(sum(events), 0) FROM spend", [], |row| {
            row.get(0)
        })
        .unwrap()
}

/// The view's rows; sums to 6 decimals (a restored sum adds the same amounts in another
/// order).
fn rows(db: &Path) -> Vec<String> {
    let connection = rusqlite::Connection::open(db).unwrap();
    let mut statement = connection
        .prepare("SELECT user_id, events, round(spend, 6) FROM spend ORDER BY user_id")
        .unwrap();
    statement
        .query_map([], |row| {
            Ok(format!(
                "{} {} {:?}",
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Option<f64>>(2)?
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
}

/// Checks that the view at `db` holds each of the first events it counted once: a
/// straight run over as many events (in `dir`) ends with the same rows.
pub fn assert_counts_a_prefix_once(dir: &Path, db: &Path, per_second: u32, users: u32) {
    let counted = counted(db);
    let straight_db = dir.join("straight.db");
    let straight = dir.join("straight.sql");
    std::fs::write(
        &straight,
        pipeline(&straight_db, Some(counted), per_second, users),
    )
    .unwrap();
    let ran = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .arg("run")
        .arg(&straight)
        .arg("--quiet")
        .status()
        .unwrap();
    assert!(ran.success());
    let (restored, expected) = (rows(db), rows(&straight_db));
    assert_eq!(expected.len(), users as usize);
    let differing: Vec<_> = restored
        .iter()
        .zip(&expected)
        .filter(|(a, b)| a != b)
        .take(5)
        .collect();
    assert!(
        restored.len() == expected.len() && differing.is_empty(),
        "after {counted} events, {} rows against {}; first differences: {differing:?}",
        restored.len(),
        expected.len()
    );
}

/// Runs `resuming` (a `profusion run` restarting from checkpoints) until the view at `db`
/// has counted `margin` more events than it held: past what a stopped run upserted after
/// the checkpoint it resumes from (replaying up to there changes nothing). Then stops it
/// with Ctrl-C and returns what it printed.
pub fn resume_past(resuming: &mut Command, db: &Path, margin: i64) -> String {
    let written_before = counted(db);
    let child = resuming
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while counted(db) <= written_before + margin {
        assert!(
            Instant::now() < deadline,
            "the restart never passed the stopped run"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{said}");
    assert!(said.contains("resuming from checkpoint"), "{said}");
    said
}
