//! `profusion run --metrics-listen`: a pipeline that serves nothing else is scraped for
//! its metrics, behind a metrics token when one is set; off loopback a token is required.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const METRICS_TOKEN: &str = "metrics-token-for-tests-0001";

const PIPELINE: &str = "
    CREATE TABLE events (user_id TEXT NOT NULL, amount DOUBLE, ts TIMESTAMP NOT NULL)
      WITH (connector = 'datagen', rows_per_second = 1000, batch_size = 50, users = 20);
    CREATE MATERIALIZED VIEW spend PRIMARY KEY (user_id)
      WITH (connector = 'sqlite', path = 'spend.db') AS
    SELECT user_id, count(*) AS events FROM events GROUP BY user_id;";

#[tokio::test]
async fn a_running_pipeline_is_scraped_with_a_metrics_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.sql");
    std::fs::write(&file, PIPELINE).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .arg("run")
        .arg(&file)
        .args(["--quiet", "--metrics-listen", "127.0.0.1:0"])
        .env("PROFUSION_METRICS_TOKENS", METRICS_TOKEN)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("run ended before serving metrics")
            .unwrap();
        if let Some(url) = line.strip_prefix("metrics on ") {
            break url.to_string();
        }
    };
    let client = reqwest::Client::new();
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = client
            .get(&url)
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let events: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("profusion_events_in_total "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        // The view's upserts are measured for staleness as the pipeline runs.
        let upserts_measured = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("profusion_profile_staleness_seconds_count{view=\"spend\"} ")
            })
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if events > 0 && upserts_measured > 0 {
            assert!(text.contains("# HELP profusion_events_in "), "{text}");
            // The pipeline's metrics only: `run` has no HTTP API of its own to count.
            assert!(!text.contains("profusion_http_responses_total"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no events counted: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

#[test]
fn off_loopback_the_metrics_need_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.sql");
    std::fs::write(&file, PIPELINE).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .arg("run")
        .arg(&file)
        .args(["--quiet", "--metrics-listen", "0.0.0.0:0"])
        .env_remove("PROFUSION_METRICS_TOKENS")
        .env_remove("PROFUSION_ADMIN_TOKENS")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PROFUSION_METRICS_TOKENS"), "{stderr}");
}
