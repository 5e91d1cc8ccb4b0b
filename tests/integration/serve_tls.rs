//! `serve --tls-cert --tls-key`: HTTPS with a self-signed certificate made by the test
//! (openssl), the signed webhook flow over it into a served profile, and plain HTTP on the
//! same port refused.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::server::{INGEST_TOKEN, READ_TOKEN, Server, field, signed};

const SECRET: &str = "webhook-secret-over-https";

/// A self-signed certificate for 127.0.0.1 and its key, in `dir`.
fn self_signed(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed to make a test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

#[tokio::test]
async fn webhooks_and_lookups_travel_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let pipeline = "
        CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
          WITH (connector = 'memory', 'scan.mode' = 'follow', retention = '1000 rows',
                'webhook.secret' = '${WEBHOOK_SECRET}');
        CREATE MATERIALIZED VIEW spend PRIMARY KEY (user_id)
          WITH (connector = 'sqlite', path = 'spend.db') AS
        SELECT user_id, count(*) AS events, sum(amount) AS spend FROM events GROUP BY user_id;";
    let server = Server::start_with(
        dir.path(),
        pipeline,
        &[("WEBHOOK_SECRET", SECRET)],
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let trusted = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(trusted)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    let body = r#"{"user_id":"u1","amount":12.5,"ts":"2026-01-01T00:00:00Z"}"#;
    let mut request = client
        .post(format!("{}/v1/ingest/events", server.url))
        .bearer_auth(INGEST_TOKEN)
        .body(body);
    for (name, value) in signed(SECRET, body.as_bytes()) {
        request = request.header(name, value);
    }
    let answer = request.send().await.unwrap();
    assert_eq!(
        answer.status().as_u16(),
        202,
        "{}",
        answer.text().await.unwrap()
    );

    let mut last = String::new();
    for _ in 0..500 {
        let answer = client
            .get(format!("{}/v1/views/spend/u1", server.url))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap();
        let (status, text) = (answer.status().as_u16(), answer.text().await.unwrap());
        if status == 200 {
            assert_eq!(field(&text, &["row", "spend"]), 12.5);
            last.clear();
            break;
        }
        last = text;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        last.is_empty(),
        "the profile never showed over HTTPS: {last}"
    );

    // A client that does not trust the certificate, and plain HTTP, get nowhere.
    assert!(
        reqwest::get(format!("{}/healthz", server.url))
            .await
            .is_err()
    );
    let plain = server.url.replacen("https://", "http://", 1);
    let refused = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(refused.is_err(), "plain HTTP was answered: {refused:?}");
    server.stop();
}

#[tokio::test]
async fn a_missing_or_bad_certificate_stops_serve_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.sql");
    std::fs::write(&file, "CREATE TABLE t (a INT) WITH (connector = 'memory');").unwrap();
    let not_a_cert = dir.path().join("cert.pem");
    std::fs::write(&not_a_cert, "hello").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args([
            "serve",
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
        ])
        .arg(&not_a_cert)
        .arg("--tls-key")
        .arg(dir.path().join("missing.pem"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cert.pem"), "{stderr}");
}
