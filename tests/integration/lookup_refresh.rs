//! A lookup join reads its table again every `'lookup.refresh'` while the stream goes on:
//! rows that arrive after the table file changed are joined with its new contents, and a
//! refresh that fails keeps the copy read before, so the stream is never held up.

use std::path::Path;
use std::time::Duration;

use datafusion::arrow::util::pretty::pretty_format_batches;
use profusion::{Engine, Pipeline, SessionOptions};

/// Replaces the table file at once (write then rename), as a deploy would.
fn write_plans(path: &Path, lines: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, lines).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

async fn rows(engine: &Engine, sql: &str) -> String {
    let batches = engine
        .context()
        .sql(sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

async fn insert(engine: &Engine, values: &str) {
    let sql = format!("INSERT INTO events VALUES {values}");
    engine
        .context()
        .sql(&sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_joined_with_the_table_as_it_is_when_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let plans = dir.path().join("plans.json");
    write_plans(&plans, "{\"user_id\": \"ann\", \"plan\": \"free\"}\n");
    let pipeline = Pipeline::load(
        &format!(
            "CREATE TABLE events (user_id TEXT NOT NULL, n BIGINT NOT NULL)
               WITH (connector = 'memory', 'scan.mode' = 'follow');
             CREATE TABLE plans (user_id TEXT NOT NULL, plan TEXT)
               WITH (connector = 'file', path = '{plans}', format = 'json', 'lookup.refresh' = '50ms');
             CREATE TABLE joined (user_id TEXT, n BIGINT, plan TEXT) WITH (connector = 'memory');
             INSERT INTO joined SELECT e.user_id, e.n, p.plan FROM events e JOIN plans p ON e.user_id = p.user_id;",
            plans = plans.display()
        ),
        &SessionOptions::default(),
    )
    .await
    .unwrap();
    let engine = pipeline.engine().clone();
    let running = tokio::spawn(pipeline.run());

    insert(&engine, "('ann', 1), ('bob', 2)").await;
    let seen =
        "SELECT user_id, plan, count(*) AS events FROM joined GROUP BY user_id, plan ORDER BY plan";
    let mut last = String::new();
    for _ in 0..300 {
        last = rows(&engine, seen).await;
        if last.contains("free") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.contains("| ann     | free | 1      |"), "{last}");
    assert!(!last.contains("bob"), "bob has no plan yet: {last}");

    // The table changes: ann upgrades, bob signs up. Rows arriving once it has been read
    // again are joined with the new plans; the stream was never paused for it.
    write_plans(
        &plans,
        "{\"user_id\": \"ann\", \"plan\": \"pro\"}\n{\"user_id\": \"bob\", \"plan\": \"team\"}\n",
    );
    let mut n = 10;
    loop {
        insert(&engine, &format!("('ann', {n}), ('bob', {})", n + 1)).await;
        last = rows(&engine, seen).await;
        if last.contains("pro") && last.contains("team") {
            break;
        }
        assert!(n < 3000, "the new plans were never used: {last}");
        n += 2;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The file goes missing: reading it again fails, and the copy read before stays in use.
    std::fs::remove_file(&plans).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rows(
        &engine,
        "SELECT count(*) AS n FROM joined WHERE plan = 'team'",
    )
    .await;
    insert(&engine, "('bob', 100000)").await;
    let mut after = String::new();
    for _ in 0..300 {
        after = rows(
            &engine,
            "SELECT count(*) AS n FROM joined WHERE plan = 'team'",
        )
        .await;
        if after != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(
        after, before,
        "bob's last event was joined with the plans read before"
    );

    engine.shared().stop.stop();
    let summary = running.await.unwrap().unwrap();
    assert!(summary.stopped);
}
