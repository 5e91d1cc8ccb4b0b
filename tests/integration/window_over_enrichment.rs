//! A window over an `enrich_http`-enriched stream: each click is enriched with its user's
//! plan from a CRM (a local HTTP server here), and clicks are counted per plan and minute.
//! The enrichment runs as DataFusion's async function node between the source and the
//! window, and the watermark passes through it in band: every window closes, with the
//! counts a batch query over the same clicks gives.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::common;

use common::http::request_path;
use common::lines;
use profusion::sql::parse_pipeline;
use profusion::{Engine, SessionOptions};

/// A CRM answering `/users/{key}` with the user's plan: `pro` for users whose number is
/// even, `free` for the others.
async fn start_crm() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(path) = request_path(&mut socket).await else {
                    return;
                };
                let number: u32 = path.trim_start_matches("/users/u").parse().unwrap_or(1);
                let plan = if number.is_multiple_of(2) {
                    "pro"
                } else {
                    "free"
                };
                let body = format!("{{\"plan\":\"{plan}\"}}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_over_an_enriched_stream_closes_every_window() {
    let port = start_crm().await;
    let engine = Engine::new(&SessionOptions::default()).unwrap();
    let clicks: Vec<String> = (0..600)
        .map(|i| {
            let (user, second) = (i % 7, i / 3);
            format!("('u{user}', TIMESTAMP '2026-01-01T00:00:00' + INTERVAL '{second}' SECOND)")
        })
        .collect();
    let setup = format!(
        "CREATE TABLE clicks (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'memory', 'scan.mode' = 'replay');
         INSERT INTO clicks VALUES {};
         SELECT plan, window_start, count(*) AS clicks
         FROM TUMBLE((SELECT enrich_http('http://127.0.0.1:{port}/users/{{key}}', user_id,
                               'field=plan, timeout=2s') AS plan, ts
                      FROM clicks), ts, INTERVAL '1' MINUTE)
         GROUP BY plan, window_start, window_end;",
        clicks.join(", ")
    );
    let mut rows = Vec::new();
    for statement in parse_pipeline(&setup).unwrap() {
        if let Some(job) = engine.submit(statement).await.unwrap() {
            if job.sql.contains("TUMBLE") {
                let plan = datafusion::physical_plan::displayable(job.plan.as_ref())
                    .indent(false)
                    .to_string();
                assert!(plan.contains("AsyncFuncExec"), "{plan}");
                assert!(plan.contains("WindowAggregateExec"), "{plan}");
            }
            rows = lines(&engine.collect(&job).await.unwrap());
        }
    }
    // 600 clicks over 200 seconds, user i % 7: users 0, 2, 4, 6 are pro.
    let mut expected = Vec::new();
    for minute in 0..4 {
        let in_minute = |pro: bool| {
            (0..600)
                .filter(|i| (i / 3) / 60 == minute && ((i % 7) % 2 == 0) == pro)
                .count()
        };
        for (plan, pro) in [("free", false), ("pro", true)] {
            let count = in_minute(pro);
            if count > 0 {
                expected.push(format!("{plan} | 2026-01-01T00:{minute:02}:00 | {count}"));
            }
        }
    }
    expected.sort();
    assert_eq!(rows, expected);
}
