//! `enrich_http` against an API that fails, hangs and recovers (a local server whose mood
//! the test sets): retries with backoff, a circuit breaker that stops calling a failing
//! API and answers from the cache or NULL, a budget that bounds how long a slow API holds a
//! batch up, a probe once the cool-down is over, and a counter for every outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use profusion::session::{SessionOptions, new_session};
use profusion::stream::PipelineContext;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::common::http::request_path;
use crate::common::lines;

const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const HANGING: u8 = 2;

/// An API answering `/users/{key}` with `{"plan":"pro-{key}"}`, or 500, or nothing at all,
/// as `mood` says; `calls` counts requests.
async fn start_api(mood: Arc<AtomicU8>, calls: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (mood, calls) = (Arc::clone(&mood), Arc::clone(&calls));
            tokio::spawn(async move {
                let Some(path) = request_path(&mut socket).await else {
                    return;
                };
                calls.fetch_add(1, Ordering::Relaxed);
                let key = path.trim_start_matches("/users/").to_string();
                let response = match mood.load(Ordering::Relaxed) {
                    HEALTHY => {
                        let body = format!("{{\"plan\":\"pro-{key}\"}}");
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    FAILING => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                        return;
                    }
                };
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hanging_then_recovering_api_is_called_with_care() {
    let (mood, calls) = (
        Arc::new(AtomicU8::new(HEALTHY)),
        Arc::new(AtomicUsize::new(0)),
    );
    let port = start_api(Arc::clone(&mood), Arc::clone(&calls)).await;
    let pipeline = Arc::new(PipelineContext::default());
    let ctx = new_session(&SessionOptions::default(), Arc::clone(&pipeline)).unwrap();
    let stats = Arc::clone(&pipeline.metrics.enrich_http);
    let outcome = |name: &str| {
        stats
            .snapshot()
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    };
    // Ten keys a call; a short cache so every round asks again, a 1-second cool-down.
    let enrich = |keys: std::ops::Range<u32>| {
        let values: Vec<String> = keys.map(|k| format!("('k{k}')")).collect();
        format!(
            "SELECT key, enrich_http('http://127.0.0.1:{port}/users/{{key}}', key,
               'field=plan, timeout=300ms, retries=1, cache.ttl=10ms, budget=1s,
                breaker.failures=3, breaker.cooldown=1s') AS plan
             FROM (VALUES {}) AS keys(key) ORDER BY key",
            values.join(", ")
        )
    };
    let run = |sql: String| {
        let ctx = ctx.clone();
        async move {
            let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
            lines(&batches)
        }
    };

    // Healthy: every key answered.
    let rows = run(enrich(0..10)).await;
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| r.contains("pro-k")), "{rows:?}");
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Failing: the keys in flight fail (each tried twice, with backoff), the breaker
    // opens, and every key gets the cache's last (expired) answer.
    mood.store(FAILING, Ordering::Relaxed);
    let before = calls.load(Ordering::Relaxed);
    let rows = run(enrich(0..10)).await;
    let made = calls.load(Ordering::Relaxed) - before;
    assert!(made <= 10 * 2, "{made} calls to a failing API");
    assert!(outcome("retry") > 0, "{:?}", stats.snapshot());
    assert!(outcome("stale_answer") > 0, "{:?}", stats.snapshot());
    assert!(
        rows.iter().all(|r| r.contains("pro-k")),
        "the cache's last answers were not given: {rows:?}"
    );
    // New keys have nothing cached: NULL, still without calling while the breaker is open.
    let before = calls.load(Ordering::Relaxed);
    let rows = run(enrich(100..110)).await;
    assert_eq!(
        calls.load(Ordering::Relaxed),
        before,
        "an open breaker called the API"
    );
    assert!(rows.iter().all(|r| !r.contains("pro-")), "{rows:?}");
    assert_eq!(outcome("short_circuited"), 10, "{:?}", stats.snapshot());

    // Hanging, after the cool-down: a probe (one attempt) times out, the breaker opens
    // again; the batch is held up by the budget at most.
    mood.store(HANGING, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let rows = run(enrich(200..210)).await;
    let took = started.elapsed();
    assert_eq!(rows.len(), 10);
    assert!(
        took < Duration::from_secs(4),
        "a hanging API held the batch {took:?}"
    );
    assert!(outcome("timeout") > 0, "{:?}", stats.snapshot());

    // Recovered: once the cool-down is over, a probe succeeds, the breaker closes and
    // every key is answered again.
    mood.store(HEALTHY, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut rows = run(enrich(300..310)).await;
    if !rows.iter().all(|r| r.contains("pro-k")) {
        // The probe was one of these keys; the others were answered NULL while it was out.
        rows = run(enrich(300..310)).await;
    }
    assert!(rows.iter().all(|r| r.contains("pro-k")), "{rows:?}");
    eprintln!("enrich_http outcomes: {:?}", stats.snapshot());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_api_holds_a_batch_up_by_the_budget_at_most() {
    let (mood, calls) = (
        Arc::new(AtomicU8::new(HANGING)),
        Arc::new(AtomicUsize::new(0)),
    );
    let port = start_api(mood, calls).await;
    let pipeline = Arc::new(PipelineContext::default());
    let ctx = new_session(&SessionOptions::default(), Arc::clone(&pipeline)).unwrap();
    let values: Vec<String> = (0..20).map(|k| format!("('k{k}')")).collect();
    // Each request may take 5 s and is tried three times: 15 s a key without the budget.
    let sql = format!(
        "SELECT count(enrich_http('http://127.0.0.1:{port}/users/{{key}}', key,
           'timeout=5s, retries=2, budget=500ms, breaker.failures=0'))
         FROM (VALUES {}) AS keys(key)",
        values.join(", ")
    );
    let started = Instant::now();
    let rows = lines(&ctx.sql(&sql).await.unwrap().collect().await.unwrap());
    let took = started.elapsed();
    assert_eq!(rows, vec!["0"], "the keys over budget are NULL");
    assert!(took < Duration::from_secs(4), "the batch waited {took:?}");
    let over = pipeline.metrics.enrich_http.snapshot();
    assert!(
        over.iter()
            .any(|(name, n)| *name == "over_budget" && *n == 20),
        "{over:?}"
    );
}
