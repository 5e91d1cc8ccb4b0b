//! `profusion repl` driven as a user drives it: statements and backslash commands on
//! standard input, `-c` and `-f` for scripts, `--pipeline` to start from a pipeline's
//! tables, errors with their position, and Ctrl-C cancelling a query without leaving.

use crate::common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rdkafka::mocking::MockCluster;

/// Runs `profusion repl ARGS` in `dir` with `input` on standard input.
fn repl(dir: &std::path::Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .arg("repl")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_session_on_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = r"
CREATE TABLE clicks (user_id TEXT NOT NULL, page TEXT, n BIGINT)
  WITH (connector = 'memory');
CREATE TABLE topic (user_id TEXT) WITH (connector = 'kafka', topic = 'events',
  'bootstrap.servers' = '127.0.0.1:9', 'properties.sasl.password' = 'hunter2');
INSERT INTO clicks VALUES ('u1', '/home', 1), ('u2', '/docs,faq', 2),
  ('u1', '/pricing', 3);
SELECT user_id, sum(n) AS clicks
FROM clicks
GROUP BY user_id ORDER BY user_id;
\d
\d clicks
\d topic
\format csv
SELECT page FROM clicks WHERE user_id = 'u2';
\format json
SELECT user_id, n FROM clicks WHERE n = 3;
\timing
SELECT 1 AS one;
\h lower
\q
SELECT 'never run';
";
    let output = repl(dir.path(), &[], input);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("CREATE TABLE"), "{stdout}");
    assert!(stdout.contains("INSERT 3"), "{stdout}");
    // The aggregate as a table, with its row count.
    let table = stdout.split("INSERT 3").nth(1).unwrap();
    assert!(table.contains("user_id"), "{stdout}");
    assert!(table.contains("u1") && table.contains('4'), "{stdout}");
    assert!(stdout.contains("(2 rows)"), "{stdout}");
    // \d and \d clicks, the password masked.
    assert!(
        stdout.contains("clicks | table (source, sink) | memory"),
        "{stdout}"
    );
    assert!(
        stdout.contains("topic  | table (source, sink) | kafka"),
        "{stdout}"
    );
    assert!(stdout.contains("user_id | Utf8  | no"), "{stdout}");
    assert!(
        stdout.contains("'properties.sasl.password' = '********'"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
    // CSV quotes what needs it; JSON is one object per row.
    assert!(stdout.contains("page\n\"/docs,faq\"\n"), "{stdout}");
    assert!(stdout.contains(r#"{"user_id":"u1","n":3}"#), "{stdout}");
    assert!(stdout.contains("Timing is on."), "{stdout}");
    assert!(stdout.contains("Time: "), "{stdout}");
    assert!(stdout.contains("lower (scalar function)"), "{stdout}");
    assert!(stdout.contains("Syntax: lower("), "{stdout}");
    assert!(!stdout.contains("never run"), "{stdout}");
}

#[test]
fn errors_show_where_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = "SELECT 1 +;\nSELECT nope FROM (VALUES (1)) AS t(a);\n\\d missing\n\\bogus\nSELECT 'still here' AS ok;\n";
    let output = repl(dir.path(), &[], input);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(stderr.contains("error:"), "{stderr}");
    // The unknown column, with a caret under it.
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(
        stderr.contains("SELECT nope FROM (VALUES (1)) AS t(a)\n       ^"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no table or view named 'missing'"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown command '\\bogus'"), "{stderr}");
    assert!(stdout.contains("still here"), "{stdout}");
}

#[test]
fn scripts_run_with_c_and_f_and_fail_with_a_status() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["repl", "-c", "SELECT 40 + 2 AS answer", "--format", "csv"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert_eq!(text(&ok.stdout), "answer\n42\n");

    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "CREATE TABLE t (a INT) WITH (connector = 'memory');\nINSERT INTO t VALUES (1), (2);\n\\i more.sql\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("more.sql"),
        "SELECT sum(a) AS total FROM t;\n",
    )
    .unwrap();
    let included = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["repl", "--format", "csv", "-f", "script.sql"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(included.status.success(), "{}", text(&included.stderr));
    assert!(
        text(&included.stdout).ends_with("total\n3\n"),
        "{}",
        text(&included.stdout)
    );

    let failed = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["repl", "-c", "SELECT * FROM nowhere"])
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(
        text(&failed.stderr).contains("nowhere"),
        "{}",
        text(&failed.stderr)
    );
}

#[test]
fn a_pipelines_views_read_as_tables() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("profiles.sql");
    std::fs::write(
        &pipeline,
        "CREATE TABLE events (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL)
           WITH (connector = 'datagen', count = 1000, users = 5, seed = 7);
         CREATE MATERIALIZED VIEW user_profile PRIMARY KEY (user_id)
           WITH (connector = 'sqlite', path = 'profiles.db') AS
         SELECT user_id, count(*) AS events FROM events GROUP BY user_id;",
    )
    .unwrap();
    let ran = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["run", "--quiet"])
        .arg(&pipeline)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    let output = repl(
        dir.path(),
        &["--pipeline", "profiles.sql", "--format", "csv"],
        "SELECT count(*) AS users, sum(events) AS events FROM user_profile;\n\\d user_profile\n",
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("users,events\n5,1000\n"), "{stdout}");
    assert!(
        stdout.contains("materialized view user_profile"),
        "{stdout}"
    );
    assert!(stdout.contains("primary key: user_id"), "{stdout}");
    assert!(stdout.contains("'path' = 'profiles.db'"), "{stdout}");
}

#[test]
fn ctrl_c_cancels_the_query_not_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["repl", "--format", "csv"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A generator without a count never ends.
    stdin
        .write_all(
            b"CREATE TABLE endless (user_id TEXT, ts TIMESTAMP) WITH (connector = 'datagen', rows_per_second = 1000);\nSELECT user_id FROM endless WHERE user_id = 'nobody';\n",
        )
        .unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"SELECT 'after' AS still;\n").unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(stderr.contains("cancelled (Ctrl-C)"), "{stderr}");
    assert!(stdout.contains("still\nafter\n"), "{stdout}");
    assert!(output.status.success(), "{stderr}");
}

#[test]
fn kafka_topics_read_as_snapshots() {
    let cluster = MockCluster::new(1).unwrap();
    common::kafka::produce(
        &cluster,
        "clicks",
        &[
            (0, r#"{"user_id":"u1"}"#),
            (1, r#"{"user_id":"u2"}"#),
            (0, r#"{"user_id":"u1"}"#),
        ],
    );
    let sql = format!(
        "CREATE TABLE clicks (user_id TEXT) WITH (connector = 'kafka', topic = 'clicks',
           'bootstrap.servers' = '{}', format = 'json', 'scan.startup.mode' = 'earliest');
         SELECT user_id, count(*) AS n FROM clicks GROUP BY user_id ORDER BY user_id;",
        cluster.bootstrap_servers()
    );
    // The query ends at the topic's end, as it was when the query started.
    let output = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["repl", "--format", "csv", "-c", &sql])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "CREATE TABLE\nuser_id,n\nu1,2\nu2,1\n"
    );
}
