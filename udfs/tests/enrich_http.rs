//! `enrich_http` against an HTTP server the test starts on 127.0.0.1, which answers some
//! keys at once, some slowly, some only on a second attempt, some never in time, some with
//! 500 and some with 404: answers are cached, failures give NULL and are counted, requests
//! in flight stay within the concurrency limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::prelude::SessionContext;
use profusion_udfs::enrich::http::{EnrichHttp, EnrichStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the test server has seen.
#[derive(Default)]
struct Seen {
    requests: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl Seen {
    fn requests_for(&self, key: &str) -> usize {
        self.requests.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

/// Serves `GET /users/{key}` by the key's prefix: `slow-` after 150 ms, `hang-` after 10 s,
/// `flaky-` 500 on the first request and 200 after, `broken-` always 500, `missing-` 404,
/// anything else at once.
async fn start_server() -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let state = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&state);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request);
                let path = request.split(' ').nth(1).unwrap_or("/").to_string();
                let key = path.trim_start_matches("/users/").to_string();
                let count = {
                    let mut requests = seen.requests.lock().unwrap();
                    let count = requests.entry(key.clone()).or_default();
                    *count += 1;
                    *count
                };
                let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                seen.most_in_flight.fetch_max(now, Ordering::SeqCst);
                let (status, body) = if key.starts_with("slow-") {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    ("200 OK", format!("{{\"id\":\"{key}\",\"plan\":\"team\"}}"))
                } else if key.starts_with("hang-") {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    ("200 OK", "{}".to_string())
                } else if (key.starts_with("flaky-") && count == 1) || key.starts_with("broken-") {
                    ("500 Internal Server Error", "{}".to_string())
                } else if key.starts_with("missing-") {
                    ("404 Not Found", "{}".to_string())
                } else {
                    (
                        "200 OK",
                        format!("{{\"id\":\"{key}\",\"plan\":\"pro\",\"seats\":3}}"),
                    )
                };
                seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

fn session() -> (SessionContext, Arc<EnrichStats>) {
    let ctx = SessionContext::new();
    let function = EnrichHttp::default();
    let stats = function.stats();
    ctx.register_udf(AsyncScalarUDF::new(Arc::new(function)).into_scalar_udf());
    (ctx, stats)
}

fn strings(batches: &[RecordBatch], column: usize) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(column)
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn enrich(
    ctx: &SessionContext,
    port: u16,
    keys: &[&str],
    options: &str,
) -> Vec<Option<String>> {
    let values = keys
        .iter()
        .map(|k| format!("('{k}')"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT enrich_http('http://127.0.0.1:{port}/users/{{key}}', k, '{options}') FROM (VALUES {values}) AS t(k)"
    );
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    strings(&batches, 0)
}

#[tokio::test]
async fn answers_fields_and_nulls_for_each_kind_of_key() {
    let (port, seen) = start_server().await;
    let (ctx, stats) = session();
    let keys = [
        "u1",
        "slow-2",
        "flaky-3",
        "broken-4",
        "missing-5",
        "hang-6",
        "u1",
    ];
    let values = enrich(&ctx, port, &keys, "field=plan, timeout=400ms, retries=1").await;
    let expected = [
        Some("pro"),
        Some("team"),
        Some("pro"),
        None,
        None,
        None,
        Some("pro"),
    ];
    assert_eq!(values, expected.map(|v| v.map(str::to_string)));

    // The duplicate key was asked once; the flaky key twice; the broken and hanging ones
    // once plus one retry.
    assert_eq!(seen.requests_for("u1"), 1);
    assert_eq!(seen.requests_for("flaky-3"), 2);
    assert_eq!(seen.requests_for("broken-4"), 2);
    assert_eq!(seen.requests_for("hang-6"), 2);
    let [hits, requests, not_found, failures, timeouts, ..] = stats.snapshot().map(|(_, n)| n);
    assert_eq!((hits, not_found, failures, timeouts), (0, 1, 2, 2));
    assert_eq!(requests, 9);

    // A second query is answered from the cache, but failures are asked again.
    let again = enrich(
        &ctx,
        port,
        &["u1", "slow-2", "missing-5", "broken-4"],
        "field=plan, timeout=400ms, retries=1",
    )
    .await;
    assert_eq!(
        again,
        [
            Some("pro".to_string()),
            Some("team".to_string()),
            None,
            None
        ]
    );
    assert_eq!(seen.requests_for("u1"), 1);
    assert_eq!(seen.requests_for("slow-2"), 1);
    assert_eq!(seen.requests_for("missing-5"), 1);
    assert_eq!(seen.requests_for("broken-4"), 4);
    assert_eq!(stats.snapshot()[0], ("cache_hit", 3));
}

#[tokio::test]
async fn whole_bodies_and_pointers() {
    let (port, _) = start_server().await;
    let (ctx, _) = session();
    let body = enrich(&ctx, port, &["u7"], "retries=0").await;
    assert_eq!(
        body,
        [Some(
            "{\"id\":\"u7\",\"plan\":\"pro\",\"seats\":3}".to_string()
        )]
    );
    let seats = enrich(&ctx, port, &["u7"], "field=/seats").await;
    assert_eq!(seats, [Some("3".to_string())]);
}

#[tokio::test]
async fn requests_in_flight_stay_within_the_limit() {
    let (port, seen) = start_server().await;
    let (ctx, stats) = session();
    let keys: Vec<String> = (0..24).map(|i| format!("slow-{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = enrich(&ctx, port, &keys, "concurrency=3, field=plan").await;
    assert!(values.iter().all(|v| v.as_deref() == Some("team")));
    assert!(
        seen.most_in_flight.load(Ordering::SeqCst) <= 3,
        "{} in flight",
        seen.most_in_flight.load(Ordering::SeqCst)
    );
    assert_eq!(stats.snapshot()[1], ("request", 24));
}

#[tokio::test]
async fn bad_templates_and_options_are_planning_errors() {
    let (ctx, _) = session();
    for (call, message) in [
        ("enrich_http('http://127.0.0.1:1/users', k)", "has no {key}"),
        (
            "enrich_http('ftp://127.0.0.1/{key}', k)",
            "not http or https",
        ),
        (
            "enrich_http('http://127.0.0.1:1/{key}', k, 'timeout=fast')",
            "timeout",
        ),
        (
            "enrich_http('http://127.0.0.1:1/{key}', k, 'cache.sise=1')",
            "unknown option cache.sise",
        ),
        (
            "enrich_http(k, k)",
            "URL template must be a constant string",
        ),
    ] {
        let error = match ctx
            .sql(&format!("SELECT {call} FROM (VALUES ('a')) AS t(k)"))
            .await
        {
            Ok(frame) => frame.collect().await.unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(error.contains(message), "{call}: {error}");
    }
}
