//! Nexmark: each query in `sql/nexmark` runs over generated people, auctions and bids
//! planned as streams (the continuous operators, never DataFusion's batch joins or sorts),
//! and its output equals, row for row, the same query run as a batch query over the same
//! events written to Parquet files. A query whose answer changes as rows arrive (a Top-N)
//! streams a changelog: its file names the key (`-- changelog key: a, b`), and the last
//! row of each key is compared. A query made of materialized views names the view that
//! holds its answer (`-- answer: q4`), whose final rows are compared.

use std::path::Path;

use crate::common;

use common::{latest_per_key, lines, repository_path, run_pipeline};
use datafusion::arrow::array::RecordBatch;
use profusion::sql::{parse_pipeline, substitute_variables};
use profusion::{Engine, SessionOptions};

/// Events of all three kinds, 1,000 a second of event time: 100 s of auctions.
const EVENTS: &str = "60000";
const TABLES: [&str; 3] = ["person", "auction", "bid"];

fn nexmark_file(name: &str) -> String {
    let path = repository_path("sql/nexmark").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `tables.sql`, generating `EVENTS` events spread over 100 s of event time.
fn generated_tables() -> String {
    let text = nexmark_file("tables.sql").replace("seed = 0", "seed = 0, event_rate = 1000");
    substitute_variables(&text, |name| {
        (name == "NEXMARK_EVENTS").then(|| EVENTS.into())
    })
    .unwrap()
}

/// `tables.sql` with each table read from the Parquet file `dir/<table>.parquet`.
fn file_tables(dir: &Path) -> String {
    let mut text = generated_tables();
    for table in TABLES {
        let start = text
            .find(&format!("WITH (connector = 'nexmark', table = '{table}'"))
            .unwrap();
        let end = start + text[start..].find(");").unwrap();
        let path = dir.join(format!("{table}.parquet"));
        text.replace_range(
            start..end,
            &format!(
                "WITH (connector = 'file', path = '{}', format = 'parquet'",
                path.display()
            ),
        );
    }
    text
}

/// The rows of the last statement of `text` in a fresh engine, and its plan.
async fn run(text: &str) -> (Vec<RecordBatch>, String) {
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    let mut out = (Vec::new(), String::new());
    for statement in parse_pipeline(text).unwrap() {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            let plan = datafusion::physical_plan::displayable(job.plan.as_ref())
                .indent(false)
                .to_string();
            out = (engine.collect(&job).await.unwrap(), plan);
        }
    }
    out
}

/// The key of a query's changelog, from its `-- changelog key: a, b` line, as the output
/// columns' positions.
fn changelog_key(sql: &str, batches: &[RecordBatch]) -> Option<Vec<usize>> {
    let line = sql
        .lines()
        .find_map(|l| l.strip_prefix("-- changelog key:"))?;
    let schema = batches.first()?.schema();
    Some(
        line.split(',')
            .map(|name| schema.index_of(name.trim()).unwrap())
            .collect(),
    )
}

/// Writes the generated tables to Parquet files in `dir`.
async fn write_events(dir: &Path) {
    let mut text = generated_tables();
    let files = file_tables(dir);
    for table in TABLES {
        let declared = &files[files.find(&format!("CREATE TABLE {table} (")).unwrap()..];
        let declared = &declared[..declared.find(");").unwrap() + 2];
        text.push_str(&declared.replacen(
            &format!("CREATE TABLE {table} ("),
            &format!("CREATE TABLE {table}_file ("),
            1,
        ));
        text.push_str(&format!("INSERT INTO {table}_file SELECT * FROM {table};"));
    }
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    for statement in parse_pipeline(&text).unwrap() {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            engine.collect(&job).await.unwrap();
        }
    }
}

async fn check(query: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path()).await;
    let sql = nexmark_file(query);
    if let Some(answer) = sql.lines().find_map(|l| l.strip_prefix("-- answer:")) {
        return check_views(&sql, answer.trim(), dir.path()).await;
    }
    let (streamed, plan) = run(&format!("{}\n{sql}", generated_tables())).await;
    let streamed = match changelog_key(&sql, &streamed) {
        Some(key) => latest_per_key(&streamed, &key),
        None => lines(&streamed),
    };
    for batch_operator in [
        "HashJoinExec",
        "SortExec",
        "NestedLoopJoinExec",
        "SortMergeJoinExec",
    ] {
        assert!(
            !plan.contains(batch_operator),
            "{query} runs {batch_operator}:\n{plan}"
        );
    }
    let (expected, _) = run(&format!("{}\n{sql}", file_tables(dir.path()))).await;
    let expected = lines(&expected);
    assert!(!expected.is_empty(), "{query} has rows to compare");
    assert_eq!(streamed.len(), expected.len(), "{query}: rows");
    for (s, e) in streamed.iter().zip(&expected) {
        assert_eq!(s, e, "{query}");
    }
}

/// Runs the views of `sql` over the generated streams and over the Parquet files, and
/// compares the final rows of the view `answer` in both stores.
async fn check_views(sql: &str, answer: &str, dir: &Path) {
    let mut answers = Vec::new();
    for (tables, db) in [
        (generated_tables(), dir.join("streamed.db")),
        (file_tables(dir), dir.join("batch.db")),
    ] {
        let db = db.to_str().unwrap().to_string();
        let views =
            substitute_variables(sql, |name| (name == "NEXMARK_DB").then(|| db.clone())).unwrap();
        run_pipeline(&format!("{tables}\n{views}")).await;
        answers.push(stored_rows(&db, answer));
    }
    assert!(!answers[1].is_empty(), "{answer} has rows to compare");
    assert_eq!(answers[0], answers[1], "{answer}");
}

/// The rows of view `name` in the SQLite file `db`, without the store's bookkeeping
/// columns, as sorted text (floats to 6 decimals).
fn stored_rows(db: &str, name: &str) -> Vec<String> {
    let connection = rusqlite::Connection::open(db).unwrap();
    let mut statement = connection
        .prepare(&format!("SELECT * FROM {name}"))
        .unwrap();
    let names: Vec<String> = statement.column_names().map(str::to_string).collect();
    let mut rows: Vec<String> = statement
        .query_map([], |row| {
            let mut cells = Vec::new();
            for (i, name) in names.iter().enumerate() {
                if name.starts_with('_') {
                    continue;
                }
                cells.push(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Real(v) => format!("{v:.6}"),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                    rusqlite::types::ValueRef::Null => "NULL".into(),
                    other => format!("{other:?}"),
                });
            }
            Ok(cells.join(" | "))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    rows
}

macro_rules! nexmark_queries {
    ($($query:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $query() {
                check(concat!(stringify!($query), ".sql")).await;
            }
        )*

        /// Every query in `sql/nexmark` has its test above.
        #[test]
        fn every_query_is_tested() {
            let listed = [$(concat!(stringify!($query), ".sql")),*];
            let dir = repository_path("sql/nexmark");
            for entry in std::fs::read_dir(dir).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().to_string();
                if name.starts_with('q') && name.ends_with(".sql") {
                    assert!(listed.contains(&name.as_str()), "{name} has no test");
                }
            }
        }
    };
}

nexmark_queries!(
    q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q14, q15, q16, q17, q18, q19, q20, q21, q22
);
