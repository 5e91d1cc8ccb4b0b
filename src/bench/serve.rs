//! `serve_get` and `serve_ingest`: `profusion serve` measured from outside, over loopback.
//!
//! The benchmark starts the real server (this binary, `serve`, in its own process with
//! its own runtime) on a pipeline that keeps a SQLite profile per user from webhook events,
//! loads `--users` profiles through `POST /v1/ingest`, then:
//!
//! - `serve_get`: `GET /v1/views/user_profile/{key}` for random users at a fixed `--rate`
//!   from `--connections` threads (8) with a keep-alive connection each, open loop: each request has its
//!   scheduled time, and its latency counts from then, so a stall delays the requests
//!   behind it and shows in the percentiles (no coordinated omission). The threads sleep
//!   with the kernel's high-resolution timers (tens of microseconds late at most), not an
//!   async runtime's millisecond wheel, so the schedule itself adds no latency to speak of;
//! - `serve_ingest`: one signed event for a new user, then `GET` until its profile is
//!   there; the time from sending the event to the first `200`, 500 times.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::failed;
use crate::error::Result;
use crate::serve::sign;

/// Probes of the ingest-to-readable benchmark.
const INGEST_PROBES: usize = 500;
const TOKEN: &str = "benchmark-admin-token-000000001";
const SECRET: &str = "benchmark-webhook-secret";

/// The server process, stopped when dropped.
struct ServerProcess {
    child: Child,
    address: SocketAddr,
}

impl ServerProcess {
    fn start(dir: &Path) -> Result<Self> {
        let pipeline = dir.join("serve.sql");
        std::fs::write(
            &pipeline,
            format!(
                "CREATE TABLE events (user_id TEXT NOT NULL, event_type TEXT NOT NULL, amount DOUBLE,
                   ts TIMESTAMP NOT NULL) WITH (connector = 'memory', 'scan.mode' = 'follow', retention = '1000000 rows',
                   'webhook.secret' = '{SECRET}');
                 CREATE MATERIALIZED VIEW user_profile PRIMARY KEY (user_id)
                   WITH (connector = 'sqlite', path = '{}') AS
                 SELECT user_id, count(*) AS events, coalesce(sum(amount), 0.0) AS spend,
                        max(ts) AS last_seen, last_value(event_type ORDER BY ts) AS last_event
                 FROM events GROUP BY user_id;",
                dir.join("serve_profiles.db").display()
            ),
        )
        .map_err(|e| failed("writing the benchmark pipeline", e))?;
        let tokens = dir.join("tokens");
        std::fs::write(&tokens, format!("admin {TOKEN}\n"))
            .map_err(|e| failed("writing the benchmark tokens", e))?;
        let exe = std::env::current_exe().map_err(|e| failed("finding this binary", e))?;
        let mut child = Command::new(exe)
            .args(["serve", "--quiet", "--listen", "127.0.0.1:0", "--tokens"])
            .arg(&tokens)
            .arg(&pipeline)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed("starting profusion serve", e))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| failed("profusion serve", "no standard error"))?;
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(|l| l.ok())
            {
                if let Some(at) = line.find("on http://") {
                    let rest = &line[at + "on http://".len()..];
                    let _ = found.send(rest.split_whitespace().next().unwrap_or("").to_string());
                } else {
                    eprintln!("serve: {line}");
                }
            }
        });
        let address = address
            .recv_timeout(Duration::from_secs(60))
            .map_err(|e| failed("waiting for profusion serve to listen", e))?
            .parse()
            .map_err(|e| failed("the address profusion serve printed", e))?;
        Ok(Self { child, address })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP/1.1 connection, as lean as a load generator needs (blocking: each
/// load thread has its own).
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    fn open(address: SocketAddr) -> Result<Self> {
        let stream =
            TcpStream::connect(address).map_err(|e| failed("connecting to the server", e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| failed("TCP_NODELAY", e))?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` (head and body) and reads the answer's status and body.
    fn send(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>)> {
        self.stream
            .write_all(request)
            .map_err(|e| failed("sending a request", e))?;
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end])
                    .map_err(|e| failed("reading an answer", e))?;
                let status: u16 = head
                    .get(9..12)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| failed("reading an answer", head.to_string()))?;
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let total = end + 4 + length;
                while self.buffer.len() < total {
                    self.fill()?;
                }
                let body = self.buffer[end + 4..total].to_vec();
                self.buffer.drain(..total);
                return Ok((status, body));
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let read = self
            .stream
            .read(&mut chunk)
            .map_err(|e| failed("reading an answer", e))?;
        if read == 0 {
            return Err(failed(
                "reading an answer",
                "the server closed the connection",
            ));
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn get_request(user: &str) -> Vec<u8> {
    format!(
        "GET /v1/views/user_profile/{user} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .into_bytes()
}

fn ingest_request(body: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let signature = sign(SECRET.as_bytes(), &now, body.as_bytes());
    format!(
        "POST /v1/ingest/events HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\nx-profusion-timestamp: {now}\r\nx-profusion-signature: {signature}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn event(user: &str, n: u64) -> String {
    format!(
        r#"{{"user_id":"{user}","event_type":"page_view","amount":{}.25,"ts":"2026-01-01T00:{:02}:{:02}Z"}}"#,
        n % 100,
        (n / 60) % 60,
        n % 60
    )
}

/// p50, p99, p99.9 and the maximum of `latencies`, in milliseconds.
fn percentiles(latencies: &mut [Duration]) -> String {
    latencies.sort();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1e3
    };
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    )
}

/// Runs the selected serve benchmarks (blocking: the benchmark thread has nothing else to
/// do, and the load threads need the kernel's precise sleeps).
pub(super) fn serve_benchmarks(
    selected: &dyn Fn(&str) -> bool,
    connections: usize,
    users: u64,
    rate: u64,
    requests: u64,
    dir: &Path,
) -> Result<()> {
    let server = ServerProcess::start(dir)?;
    let mut connection = Connection::open(server.address)?;
    // Load the profiles, 500 events a request.
    let users = users.max(1);
    let loaded = Instant::now();
    for chunk in (0..users).collect::<Vec<_>>().chunks(500) {
        let events: Vec<String> = chunk.iter().map(|&u| event(&format!("u{u}"), u)).collect();
        let (status, body) =
            connection.send(&ingest_request(&format!("[{}]", events.join(","))))?;
        if status != 202 {
            return Err(failed("loading profiles", String::from_utf8_lossy(&body)));
        }
    }
    let last = format!("u{}", users - 1);
    while connection.send(&get_request(&last))?.0 != 200 {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "serve: {users} profiles loaded through POST /v1/ingest in {:.2}s",
        loaded.elapsed().as_secs_f64()
    );

    if selected("serve_get") {
        // Every profile read once: the benchmark measures the cache the server keeps.
        for u in 0..users {
            connection.send(&get_request(&format!("u{u}")))?;
        }
        let per_connection = requests.div_ceil(connections as u64);
        let interval = Duration::from_secs_f64(connections as f64 / rate as f64);
        let started = Instant::now() + Duration::from_millis(100);
        let address = server.address;
        let outcomes: Vec<Result<(Vec<Duration>, u64)>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..connections)
                .map(|c| {
                    scope.spawn(move || {
                        let mut connection = Connection::open(address)?;
                        let mut latencies = Vec::with_capacity(per_connection as usize);
                        let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
                        let offset = interval.mul_f64(c as f64 / connections as f64);
                        let mut errors = 0u64;
                        for k in 0..per_connection {
                            let scheduled = started + offset + interval * k as u32;
                            let now = Instant::now();
                            if scheduled > now {
                                std::thread::sleep(scheduled - now);
                            }
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            let user = format!("u{}", seed % users);
                            if connection.send(&get_request(&user))?.0 != 200 {
                                errors += 1;
                            }
                            latencies.push(scheduled.elapsed());
                        }
                        Ok((latencies, errors))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(failed("a load thread", "panicked")))
                })
                .collect()
        });
        let mut latencies = Vec::new();
        let mut errors = 0;
        for outcome in outcomes {
            let (mut found, failed_requests) = outcome?;
            latencies.append(&mut found);
            errors += failed_requests;
        }
        let elapsed = started.elapsed();
        let achieved = latencies.len() as f64 / elapsed.as_secs_f64();
        println!(
            "serve_get        {:>12} {:>10.3} {:>12.0}  target {rate}/s from {connections} threads, {errors} non-200: {}",
            latencies.len(),
            elapsed.as_secs_f64(),
            achieved,
            percentiles(&mut latencies)
        );
    }

    if selected("serve_ingest") {
        let mut reader = Connection::open(server.address)?;
        let mut latencies = Vec::with_capacity(INGEST_PROBES);
        for probe in 0..INGEST_PROBES {
            let user = format!("probe-{probe}");
            let sent = Instant::now();
            let (status, body) = connection.send(&ingest_request(&event(&user, probe as u64)))?;
            if status != 202 {
                return Err(failed("ingesting a probe", String::from_utf8_lossy(&body)));
            }
            loop {
                if reader.send(&get_request(&user))?.0 == 200 {
                    break;
                }
                if sent.elapsed() > Duration::from_secs(30) {
                    return Err(failed(
                        "serve_ingest",
                        format!("{user} never became readable"),
                    ));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            latencies.push(sent.elapsed());
            std::thread::sleep(Duration::from_millis(10));
        }
        println!(
            "serve_ingest     {:>12} {:>10} {:>12}  webhook event to profile readable: {}",
            INGEST_PROBES,
            "",
            "",
            percentiles(&mut latencies)
        );
    }
    Ok(())
}
