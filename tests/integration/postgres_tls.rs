//! PostgreSQL over TLS: `sslmode=require` and `sslmode=verify-full` (with the test CA as
//! `sslrootcert`) write and read a view over encrypted connections, which the server's
//! `pg_stat_ssl` shows; `verify-full` without a root that signed the server's certificate
//! refuses to connect. Needs `PROFUSION_TEST_POSTGRES` and `PROFUSION_TEST_POSTGRES_CA`
//! (`scripts/test` starts PostgreSQL with TLS on and sets both).

use crate::common;

use std::time::Duration;

use common::server::{INGEST_TOKEN, READ_TOKEN, Server, field};

fn tls_postgres() -> Option<(String, String)> {
    let url = std::env::var("PROFUSION_TEST_POSTGRES").ok();
    let ca = std::env::var("PROFUSION_TEST_POSTGRES_CA").ok();
    if url.is_none() || ca.is_none() {
        eprintln!(
            "skipped: PROFUSION_TEST_POSTGRES and PROFUSION_TEST_POSTGRES_CA are not set; scripts/test sets them"
        );
    }
    url.zip(ca)
}

/// `url` with `parameters` added to its query.
fn with_parameters(url: &str, parameters: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{parameters}")
}

/// Connections of `application` that the server sees encrypted.
async fn encrypted_connections(url: &str, application: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1 AND s.ssl",
            &[&application],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_view_is_written_and_read_over_tls_with_require_and_verify_full() {
    let Some((url, ca)) = tls_postgres() else {
        return;
    };
    for (mode, application) in [
        ("sslmode=require".to_string(), "profusion-tls-require"),
        (
            format!("sslmode=verify-full&sslrootcert={ca}"),
            "profusion-tls-verify-full",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let table = application.replace('-', "_");
        let view_url = with_parameters(&url, &format!("{mode}&application_name={application}"));
        let pipeline = format!(
            "CREATE TABLE events (user_id TEXT NOT NULL)
               WITH (connector = 'memory', 'scan.mode' = 'follow', retention = '1000 rows');
             CREATE MATERIALIZED VIEW seen PRIMARY KEY (user_id) WITH (
               connector = 'postgres', url = '{view_url}', table = '{table}') AS
             SELECT user_id, count(*) AS events FROM events GROUP BY user_id;"
        );
        let server = Server::start_with(dir.path(), &pipeline, &[], &["--cache-entries", "0"]);
        let (status, text) = server
            .post(
                "/v1/ingest/events",
                Some(INGEST_TOKEN),
                &[],
                br#"{"user_id":"u1"}"#.to_vec(),
            )
            .await;
        assert_eq!(status, 202, "{text}");
        let mut last = String::new();
        for _ in 0..500 {
            let (status, body) = server.get("/v1/views/seen/u1", Some(READ_TOKEN)).await;
            if status == 200 {
                assert_eq!(field(&body, &["row", "events"]), 1);
                last.clear();
                break;
            }
            last = format!("{status} {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            last.is_empty(),
            "{mode}: the view never answered: {last}\n{}",
            server.log.lock().unwrap()
        );
        let encrypted = encrypted_connections(&url, application).await;
        assert!(
            encrypted >= 1,
            "{mode}: no encrypted connection of {application}"
        );
        server.stop();
    }
}

#[tokio::test]
async fn verify_full_refuses_a_server_whose_certificate_it_cannot_trust() {
    let Some((url, _)) = tls_postgres() else {
        return;
    };
    // The system's roots: the test CA is not among them.
    let view_url = with_parameters(&url, "sslmode=verify-full");
    let failed = common::try_run_pipeline(
        &format!(
            "CREATE TABLE events (user_id TEXT NOT NULL) WITH (connector = 'memory');
             INSERT INTO events VALUES ('u1');
             CREATE MATERIALIZED VIEW untrusted PRIMARY KEY (user_id) WITH (
               connector = 'postgres', url = '{view_url}', table = 'tls_untrusted') AS
             SELECT user_id, count(*) AS events FROM events GROUP BY user_id;"
        ),
        &profusion::SessionOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        failed.contains("certificate") || failed.contains("UnknownIssuer"),
        "{failed}"
    );
}
