//! `profusion serve` against clients that hold connections without finishing requests:
//! 2,000 half-sent requests in a process that may open 512 files must not lock a real
//! client out, and slow heads, idle connections and slow bodies are cut off at their
//! timeouts.

use crate::common;

use std::time::{Duration, Instant};

use common::server::{INGEST_TOKEN, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PIPELINE: &str = "
    CREATE TABLE events (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL)
      WITH (connector = 'memory', 'scan.mode' = 'follow', retention = '10000 rows');
    CREATE MATERIALIZED VIEW activity PRIMARY KEY (user_id)
      WITH (connector = 'sqlite', path = 'activity.db') AS
    SELECT user_id, count(*) AS events FROM events GROUP BY user_id;";

/// `host:port` of a server.
fn address(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_string()
}

/// Opens a connection and sends the start of a request that never ends.
async fn half_request(address: &str) -> Option<TcpStream> {
    let connect = TcpStream::connect(address);
    let mut stream = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .ok()?
        .ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .ok()?;
    Some(stream)
}

/// Reads until the server closes the connection; what it sent, or `None` if it did not
/// close it within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    });
    read.await.ok()?;
    Some(String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn two_thousand_half_sent_requests_do_not_lock_out_a_real_client() {
    let dir = tempfile::tempdir().unwrap();
    // Timeouts far longer than the test: only the connection cap can keep room.
    let server = Server::start_limited(
        dir.path(),
        PIPELINE,
        &[],
        &["--header-timeout", "10m", "--idle-timeout", "10m"],
        Some(512),
    );
    let address = address(&server);
    let mut held = Vec::new();
    for _ in 0..20 {
        let opened = futures::future::join_all((0..100).map(|_| half_request(&address))).await;
        held.extend(opened.into_iter().flatten());
    }
    eprintln!("{} of 2000 slow connections opened", held.len());

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let answer = client.get(format!("{}/healthz", server.url)).send().await;
        let took = started.elapsed();
        let status = answer.map(|a| a.status().as_u16());
        assert_eq!(
            status.as_ref().ok(),
            Some(&200),
            "a real client was not answered among {} slow connections: {status:?} after {took:?}\n{}",
            held.len(),
            server.log.lock().unwrap()
        );
        slowest = slowest.max(took);
    }
    eprintln!("a real client among the slow connections: answered, slowest in {slowest:?}");
    assert!(
        server.log.lock().unwrap().contains("serving at most"),
        "the cap was not fitted to the open-files limit"
    );
    drop(held);
}

#[tokio::test]
async fn slow_heads_idle_connections_and_slow_bodies_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        PIPELINE,
        &[],
        &[
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "2s",
            "--request-timeout",
            "1s",
        ],
    );
    let address = address(&server);

    // A head dribbled a byte at a time.
    let mut dribbling = half_request(&address).await.unwrap();
    let dribble = async {
        for _ in 0..100 {
            if dribbling.write_all(b"X").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), dribble)
        .await
        .expect("a head dribbled for 10 s was never cut off");
    let mut nothing = TcpStream::connect(&address).await.unwrap();
    assert!(
        closed_within(&mut nothing, Duration::from_secs(15))
            .await
            .is_some(),
        "a connection that sent nothing stayed open"
    );

    // A connection left idle after its answer.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answered = closed_within(&mut idle, Duration::from_secs(15))
        .await
        .expect("an idle connection stayed open");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");

    // A body that never arrives whole.
    let mut slow_body = TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/ingest/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {INGEST_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"user_id\""
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();
    let answered = closed_within(&mut slow_body, Duration::from_secs(15))
        .await
        .expect("a request whose body never came stayed open");
    assert!(answered.starts_with("HTTP/1.1 408"), "{answered}");
    assert!(answered.contains("--request-timeout"), "{answered}");
}
