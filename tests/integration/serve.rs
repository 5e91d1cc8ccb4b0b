//! `profusion serve` as a client sees it: every endpoint's answers and errors, tokens and
//! scopes, signed webhooks (1,000 forged or tampered requests all refused with nothing
//! written), idempotency keys, and events pushed in and read back as profiles.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::server::{ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN, Server, field, signed};

const SECRET: &str = "webhook-secret-for-tests";

/// Events pushed over HTTP into a followed memory table, kept per user in SQLite.
fn pipeline(models: &str) -> String {
    format!(
        "CREATE TABLE events (
           user_id TEXT NOT NULL, event_type TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL
         ) WITH (connector = 'memory', 'scan.mode' = 'follow', retention = '100000 rows', 'webhook.secret' = '${{WEBHOOK_SECRET}}');
         CREATE TABLE open_events (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL)
           WITH (connector = 'memory', 'scan.mode' = 'follow', retention = '1 hour');
         CREATE TABLE report (user_id TEXT) WITH (connector = 'blackhole');
         CREATE TABLE snapshot_events (user_id TEXT) WITH (connector = 'memory');
         CREATE MATERIALIZED VIEW user_profile PRIMARY KEY (user_id) WITH (
           connector = 'sqlite', path = 'profiles.db',
           'score.purchase_propensity' = 'score_logistic(''{models}/purchase_propensity.json'', events, spend)',
           'score.is_engaged' = 'events >= 3'
         ) AS
         SELECT user_id, count(*) AS events, coalesce(sum(amount), 0.0) AS spend,
                last_value(event_type ORDER BY ts) AS last_event
         FROM events GROUP BY user_id;"
    )
}

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let models = common::repository_path("sql/models").display().to_string();
    let server = Server::start(
        dir.path(),
        &pipeline(&models),
        &[("WEBHOOK_SECRET", SECRET)],
    );
    (dir, server)
}

/// An event of `user`, each a second after the one made before it.
fn event(user: &str, kind: &str, amount: f64) -> String {
    static SECONDS: AtomicU64 = AtomicU64::new(0);
    let at = SECONDS.fetch_add(1, Ordering::Relaxed);
    format!(
        r#"{{"user_id":"{user}","event_type":"{kind}","amount":{amount},"ts":"2026-01-01T{:02}:{:02}:{:02}Z"}}"#,
        at / 3600 % 24,
        at / 60 % 60,
        at % 60
    )
}

async fn push(server: &Server, body: &str) -> (u16, String) {
    server
        .post(
            "/v1/ingest/events",
            Some(INGEST_TOKEN),
            &signed(SECRET, body.as_bytes()),
            body.as_bytes().to_vec(),
        )
        .await
}

/// Waits until the profile of `user` shows `events` events.
async fn profile_with(server: &Server, user: &str, events: i64) -> String {
    let path = format!("/v1/views/user_profile/{user}");
    let mut last = String::new();
    for _ in 0..500 {
        let (status, body) = server.get(&path, Some(READ_TOKEN)).await;
        if status == 200 && field(&body, &["row", "events"]) == events {
            return body;
        }
        last = format!("{status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the profile of {user} never showed {events} events; last: {last}\nserver log:\n{}",
        server.log.lock().unwrap()
    );
}

#[tokio::test]
async fn pushed_events_become_profiles_and_scores() {
    let (_dir, server) = start();
    assert_eq!(server.get("/healthz", None).await.0, 200);
    assert_eq!(server.get("/readyz", None).await.0, 200);

    let (status, body) = push(&server, &event("u1", "page_view", 0.0)).await;
    assert_eq!(
        (status, body.as_str()),
        (202, r#"{"table":"events","accepted":1}"#)
    );
    let batch = format!(
        "[{},{}]",
        event("u1", "purchase", 30.0),
        event("u2", "chat_message", 0.0)
    );
    assert_eq!(push(&server, &batch).await.0, 202);

    let profile = profile_with(&server, "u1", 2).await;
    assert_eq!(field(&profile, &["view"]), "user_profile");
    assert_eq!(field(&profile, &["key"]), "u1");
    assert_eq!(field(&profile, &["row", "spend"]), 30.0);
    assert!(
        field(&profile, &["version"]).as_i64().unwrap() >= 2,
        "{profile}"
    );
    assert!(
        field(&profile, &["updated_at"])
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "{profile}"
    );
    profile_with(&server, "u2", 1).await;

    // A table without a secret takes events with an ingest token alone.
    let (status, text) = server
        .post(
            "/v1/ingest/open_events",
            Some(INGEST_TOKEN),
            &[],
            br#"{"user_id":"u3","ts":"2026-01-01T00:00:00Z"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 202, "{text}");

    // The cache follows the pipeline's upserts.
    assert_eq!(push(&server, &event("u1", "form_submit", 0.0)).await.0, 202);
    profile_with(&server, "u1", 3).await;

    let (status, scored) = server
        .post(
            "/v1/score/user_profile/u1",
            Some(READ_TOKEN),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(status, 200, "{scored}");
    let expected = 1.0 / (1.0 + f64::exp(-(-2.0 + 0.08 * 3.0 + 0.01 * 30.0)));
    let propensity = field(&scored, &["scores", "purchase_propensity"])
        .as_f64()
        .unwrap();
    assert!((propensity - expected).abs() < 1e-9, "{scored}");
    assert_eq!(field(&scored, &["scores", "is_engaged"]), true);
    assert_eq!(field(&scored, &["row", "last_event"]), "form_submit");

    let (status, missing) = server
        .get("/v1/views/user_profile/nobody", Some(READ_TOKEN))
        .await;
    assert_eq!(status, 404, "{missing}");
    assert!(missing.contains("no row with key nobody"), "{missing}");
    let (status, unknown) = server.get("/v1/views/nothing/u1", Some(READ_TOKEN)).await;
    assert_eq!(status, 404);
    assert!(unknown.contains("user_profile"), "{unknown}");
    let (status, _) = server
        .post("/v1/score/nothing/u1", Some(READ_TOKEN), &[], Vec::new())
        .await;
    assert_eq!(status, 404);

    let (status, metrics) = server.get("/metrics", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    for line in [
        "profusion_source_events_in_total{table=\"events\"} 4",
        "profusion_source_rows_out_total{table=\"events\"} 4",
        "profusion_table_rows_out_total{table=\"events\"} 4",
        "profusion_ingested_events_total 5",
        "profusion_upsert_duration_seconds_count",
        "profusion_profile_staleness_seconds_count{view=\"user_profile\"}",
        "profusion_http_request_duration_seconds_count{route=\"views\"}",
        "profusion_http_responses_total{route=\"views\",status=\"404\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    server.stop();
}

#[tokio::test]
async fn tokens_and_scopes_guard_every_endpoint() {
    let (_dir, server) = start();
    let body = event("u1", "page_view", 0.0);
    for (path, post) in [
        ("/v1/views/user_profile/u1", false),
        ("/v1/score/user_profile/u1", true),
        ("/v1/ingest/events", true),
        ("/metrics", false),
        ("/v1/anything", false),
    ] {
        for token in [None, Some("not-a-token-at-all-0000"), Some("Bearer")] {
            let (status, text) = match post {
                true => {
                    server
                        .post(
                            path,
                            token,
                            &signed(SECRET, body.as_bytes()),
                            body.clone().into_bytes(),
                        )
                        .await
                }
                false => server.get(path, token).await,
            };
            assert_eq!(status, 401, "{path} with {token:?}: {text}");
        }
    }
    // A valid token without the scope: 403.
    assert_eq!(
        server
            .get("/v1/views/user_profile/u1", Some(INGEST_TOKEN))
            .await
            .0,
        403
    );
    assert_eq!(server.get("/metrics", Some(READ_TOKEN)).await.0, 403);
    let (status, _) = server
        .post(
            "/v1/ingest/events",
            Some(READ_TOKEN),
            &signed(SECRET, body.as_bytes()),
            body.clone().into_bytes(),
        )
        .await;
    assert_eq!(status, 403);
    // The admin token may do everything.
    assert_eq!(
        server
            .get("/v1/views/user_profile/u1", Some(ADMIN_TOKEN))
            .await
            .0,
        404
    );
    let (metrics_status, metrics) = server.get("/metrics", Some(ADMIN_TOKEN)).await;
    assert_eq!(metrics_status, 200);
    assert!(
        metrics.contains("profusion_ingested_events_total 0"),
        "{metrics}"
    );
    server.stop();
}

/// A token listed under two scopes has both (it had only the higher one); a `metrics`
/// token reads `/metrics` and nothing else; a tokens file others may read is warned about.
#[tokio::test]
async fn a_token_of_two_scopes_has_both_and_a_metrics_token_only_metrics() {
    const METRICS_TOKEN: &str = "metrics-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let models = common::repository_path("sql/models").display().to_string();
    let server = Server::start(
        dir.path(),
        &pipeline(&models),
        &[
            ("WEBHOOK_SECRET", SECRET),
            // The read token is an ingest token too.
            ("PROFUSION_INGEST_TOKENS", READ_TOKEN),
            ("PROFUSION_METRICS_TOKENS", METRICS_TOKEN),
        ],
    );
    let body = event("u1", "page_view", 0.0);
    let ingest = |token: &'static str| {
        let (server, body) = (&server, body.clone());
        async move {
            let headers = signed(SECRET, body.as_bytes());
            server
                .post(
                    "/v1/ingest/events",
                    Some(token),
                    &headers,
                    body.into_bytes(),
                )
                .await
        }
    };
    let (status, text) = ingest(READ_TOKEN).await;
    assert!(
        status < 300,
        "ingest with a read+ingest token: {status} {text}"
    );
    let (status, text) = server
        .get("/v1/views/user_profile/u1", Some(READ_TOKEN))
        .await;
    assert_ne!(status, 403, "read with a read+ingest token: {text}");
    assert_ne!(status, 401, "read with a read+ingest token: {text}");
    let (status, text) = server.get("/metrics", Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("profusion_events_in_total"), "{text}");
    assert_eq!(ingest(METRICS_TOKEN).await.0, 403);
    assert_eq!(
        server
            .get("/v1/views/user_profile/u1", Some(METRICS_TOKEN))
            .await
            .0,
        403
    );
    let log = server.stop();
    assert!(
        log.contains("may be read by others than its owner"),
        "{log}"
    );
}

#[tokio::test]
async fn bad_webhooks_are_refused_with_the_reason_and_write_nothing() {
    let (_dir, server) = start();
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let server = &server;
        async move {
            server
                .post("/v1/ingest/events", Some(INGEST_TOKEN), &headers, body)
                .await
        }
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not json", b"{nope".to_vec(), 400, "not valid JSON"),
        ("a number", b"42".to_vec(), 400, "object"),
        (
            "unknown field",
            br#"{"user_id":"u1","event_type":"x","ts":"2026-01-01T00:00:00Z","colour":"red"}"#
                .to_vec(),
            400,
            "colour",
        ),
        (
            "missing column",
            br#"{"event_type":"x","ts":"2026-01-01T00:00:00Z"}"#.to_vec(),
            400,
            "fit",
        ),
        (
            "wrong type",
            br#"{"user_id":"u1","event_type":"x","amount":"lots","ts":"2026-01-01T00:00:00Z"}"#
                .to_vec(),
            400,
            "fit",
        ),
    ];
    for (what, body, status, reason) in cases {
        let (got, text) = post(signed(SECRET, &body), body).await;
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(reason), "{what}: {text}");
    }
    let big = format!("[{}]", vec![event("u1", "x", 0.0); 20_000].join(","));
    assert!(big.len() > 1 << 20);
    // The server answers 413 as soon as the declared length is over the limit and closes
    // the connection; a client still writing the body may see the pipe close instead. On a
    // connection of its own: a pooled one the server closed would fail the next request.
    let (status, text) = server
        .post_alone(
            "/v1/ingest/events",
            Some(INGEST_TOKEN),
            &signed(SECRET, big.as_bytes()),
            big.into_bytes(),
        )
        .await;
    assert!(
        status == 413 || (status == 0 && text.contains("BodyWrite")),
        "{status}: {text}"
    );

    let body = event("u1", "page_view", 1.0).into_bytes();
    let (status, text) = post(Vec::new(), body.clone()).await;
    assert_eq!(
        (status, text.contains("X-Profusion-Timestamp")),
        (401, true),
        "{text}"
    );
    let old = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 600)
        .to_string();
    let stale = vec![
        ("x-profusion-timestamp", old.clone()),
        (
            "x-profusion-signature",
            profusion::serve::sign(SECRET.as_bytes(), &old, &body),
        ),
    ];
    let (status, text) = post(stale, body.clone()).await;
    assert_eq!((status, text.contains("tolerance")), (401, true), "{text}");

    let (status, text) = server
        .post("/v1/ingest/report", Some(INGEST_TOKEN), &[], b"{}".to_vec())
        .await;
    assert_eq!(status, 400);
    assert!(text.contains("blackhole"), "{text}");
    assert_eq!(
        server
            .post(
                "/v1/ingest/nothing",
                Some(INGEST_TOKEN),
                &[],
                b"{}".to_vec()
            )
            .await
            .0,
        404
    );

    // 1,000 forged or tampered requests: none is written.
    let valid = event("victim", "purchase", 1000.0).into_bytes();
    for i in 0..1000 {
        let (token, headers, body): (String, Vec<(&'static str, String)>, Vec<u8>) = match i % 5 {
            // A forged token.
            0 => (
                format!("forged-token-{i:012}"),
                signed(SECRET, &valid),
                valid.clone(),
            ),
            // A body changed after signing.
            1 => {
                let mut tampered = valid.clone();
                let at = i % tampered.len();
                tampered[at] ^= 0x01;
                (INGEST_TOKEN.into(), signed(SECRET, &valid), tampered)
            }
            // Signed with another secret.
            2 => (
                INGEST_TOKEN.into(),
                signed(&format!("guess-{i}"), &valid),
                valid.clone(),
            ),
            // A signature with one digit changed.
            3 => {
                let mut headers = signed(SECRET, &valid);
                let signature = &mut headers[1].1;
                let at = 7 + i % 64;
                let digit = if &signature[at..=at] == "0" { "1" } else { "0" };
                signature.replace_range(at..=at, digit);
                (INGEST_TOKEN.into(), headers, valid.clone())
            }
            // The right signature for another timestamp.
            _ => {
                let mut headers = signed(SECRET, &valid);
                let shifted = headers[0].1.parse::<u64>().unwrap() - 1 - (i as u64 % 100);
                headers[0].1 = shifted.to_string();
                (INGEST_TOKEN.into(), headers, valid.clone())
            }
        };
        let (status, _) = server
            .post("/v1/ingest/events", Some(&token), &headers, body)
            .await;
        assert_eq!(status, 401, "forgery {i} (kind {}) was not refused", i % 5);
    }
    // Nothing reached the table or the profile.
    let (_, metrics) = server.get("/metrics", Some(ADMIN_TOKEN)).await;
    assert!(
        metrics.contains("profusion_ingested_events_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("profusion_source_events_in_total{table=\"events\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("profusion_table_rows_out_total{table=\"events\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("profusion_ingest_rejected_total{reason=\"signature\"} "),
        "{metrics}"
    );
    assert_eq!(
        server
            .get("/v1/views/user_profile/victim", Some(READ_TOKEN))
            .await
            .0,
        404
    );
    server.stop();
}

#[tokio::test]
async fn an_idempotency_key_writes_once() {
    let (_dir, server) = start();
    let body = event("u7", "purchase", 5.0);
    let mut headers = signed(SECRET, body.as_bytes());
    headers.push(("idempotency-key", "order-7".into()));
    let first = server
        .post(
            "/v1/ingest/events",
            Some(INGEST_TOKEN),
            &headers,
            body.clone().into_bytes(),
        )
        .await;
    assert_eq!(first.0, 202);
    let again = server
        .post(
            "/v1/ingest/events",
            Some(INGEST_TOKEN),
            &headers,
            body.clone().into_bytes(),
        )
        .await;
    assert_eq!(again, first);
    let other = event("u7", "purchase", 6.0);
    let mut other_headers = signed(SECRET, other.as_bytes());
    other_headers.push(("idempotency-key", "order-7".into()));
    let conflict = server
        .post(
            "/v1/ingest/events",
            Some(INGEST_TOKEN),
            &other_headers,
            other.into_bytes(),
        )
        .await;
    assert_eq!(conflict.0, 422, "{}", conflict.1);
    profile_with(&server, "u7", 1).await;
    // A later event without the key still counts, and the replay never did.
    assert_eq!(push(&server, &event("u7", "page_view", 0.0)).await.0, 202);
    let profile = profile_with(&server, "u7", 2).await;
    assert_eq!(field(&profile, &["row", "spend"]), 5.0);
    server.stop();
}

#[tokio::test]
async fn a_captured_signed_request_replayed_under_another_key_is_refused() {
    let (_dir, server) = start();
    let body = event("u9", "purchase", 40.0);
    let captured = signed(SECRET, body.as_bytes());
    let with_key = |key: Option<&str>| {
        let mut headers = captured.clone();
        if let Some(key) = key {
            headers.push(("idempotency-key", key.to_string()));
        }
        headers
    };
    let post = |headers: Vec<(&'static str, String)>| {
        let server = &server;
        let body = body.clone().into_bytes();
        async move {
            server
                .post("/v1/ingest/events", Some(INGEST_TOKEN), &headers, body)
                .await
        }
    };
    assert_eq!(post(with_key(Some("order-9"))).await.0, 202);
    // The same key is the client's own retry: answered again, nothing written.
    assert_eq!(post(with_key(Some("order-9"))).await.0, 202);
    // Another key, or none: a replay of the captured request.
    for key in [Some("order-9-again"), None] {
        let (status, text) = post(with_key(key)).await;
        assert_eq!(status, 409, "replayed with key {key:?}: {text}");
        assert!(text.contains("taken already"), "{text}");
    }
    profile_with(&server, "u9", 1).await;
    // A request signed anew is taken.
    assert_eq!(push(&server, &event("u9", "page_view", 0.0)).await.0, 202);
    let profile = profile_with(&server, "u9", 2).await;
    assert_eq!(field(&profile, &["row", "spend"]), 40.0);
    let (_, metrics) = server.get("/metrics", Some(ADMIN_TOKEN)).await;
    assert!(
        metrics.contains("profusion_ingest_rejected_total{reason=\"replay\"} 2"),
        "{metrics}"
    );
    server.stop();
}

/// The promise is bounded: a retry is a no-op among the newest `--idempotency-keys` keys;
/// one forgotten for newer ones writes again.
#[tokio::test]
async fn an_idempotency_key_is_kept_among_the_newest_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::repository_path("sql/models").display().to_string();
    let server = Server::start_with(
        dir.path(),
        &pipeline(&models),
        &[("WEBHOOK_SECRET", SECRET)],
        &["--idempotency-keys", "3"],
    );
    let send = |key: &str, body: &str| {
        let mut headers = signed(SECRET, body.as_bytes());
        headers.push(("idempotency-key", key.to_string()));
        let (server, body) = (&server, body.to_string());
        async move {
            server
                .post(
                    "/v1/ingest/events",
                    Some(INGEST_TOKEN),
                    &headers,
                    body.into_bytes(),
                )
                .await
        }
    };
    let first = event("u5", "purchase", 1.0);
    assert_eq!(send("k0", &first).await.0, 202);
    // Within the bound, a retry (signed anew, as a client retrying does) writes nothing.
    assert_eq!(send("k0", &first).await.0, 202);
    profile_with(&server, "u5", 1).await;
    for key in ["k1", "k2", "k3"] {
        assert_eq!(send(key, &event("u6", "page_view", 0.0)).await.0, 202);
    }
    // k0 was the oldest of four: forgotten, its retry is written again. (Signed in another
    // second: the same body signed in the same second is the same signature, taken once.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send("k0", &first).await.0, 202);
    profile_with(&server, "u5", 2).await;
    server.stop();
}

#[tokio::test]
async fn no_auth_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.sql");
    std::fs::write(&file, "CREATE TABLE t (a INT) WITH (connector = 'memory');").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["serve", "--no-auth", "--listen", "0.0.0.0:0"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only on a loopback address"), "{stderr}");
}

#[tokio::test]
async fn without_tokens_serve_makes_one_and_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.sql");
    std::fs::write(&file, "CREATE TABLE t (a INT) WITH (connector = 'memory');").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["serve", "--quiet", "--listen", "127.0.0.1:0"])
        .arg(&file)
        .env_remove("PROFUSION_ADMIN_TOKENS")
        .env_remove("PROFUSION_READ_TOKENS")
        .env_remove("PROFUSION_INGEST_TOKENS")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut token = None;
    let mut url = None;
    for line in lines.map_while(Result::ok) {
        if line.starts_with("  ") && token.is_none() {
            token = Some(line.trim().to_string());
        }
        if let Some(at) = line.find("on http://") {
            url = Some(format!(
                "http://{}",
                line[at + 10..].split_whitespace().next().unwrap()
            ));
            break;
        }
    }
    let (token, url) = (token.unwrap(), url.unwrap());
    assert_eq!(token.len(), 64);
    let client = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(client.get(format!("{url}/metrics")).send().await.unwrap()),
        401
    );
    assert_eq!(
        status(
            client
                .get(format!("{url}/metrics"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
        ),
        200
    );
    let _ = child.kill();
    let _ = child.wait();
}
