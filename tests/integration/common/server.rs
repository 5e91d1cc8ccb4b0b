//! A `profusion serve` process for tests: started on a free port of 127.0.0.1 with its
//! own tokens, stopped (Ctrl-C, then kill) when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const READ_TOKEN: &str = "read-token-for-tests-0001";
pub const INGEST_TOKEN: &str = "ingest-token-for-tests-0001";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0001";

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` (`https://` when serving TLS).
    pub url: String,
    /// What the server printed on standard error so far.
    pub log: Arc<Mutex<String>>,
    pub client: reqwest::Client,
}

impl Server {
    /// Serves `pipeline` (a file in `dir`) with the test tokens and `env`.
    pub fn start(dir: &Path, pipeline: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(dir, pipeline, env, &[])
    }

    /// [`Server::start`] with more arguments for `serve`.
    pub fn start_with(dir: &Path, pipeline: &str, env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::start_limited(dir, pipeline, env, args, None)
    }

    /// [`Server::start_with`] in a process that may open at most `open_files` files
    /// (`ulimit -n`), when given.
    pub fn start_limited(
        dir: &Path,
        pipeline: &str,
        env: &[(&str, &str)],
        args: &[&str],
        open_files: Option<u32>,
    ) -> Self {
        let file = dir.join("pipeline.sql");
        std::fs::write(&file, pipeline).unwrap();
        let tokens = dir.join("tokens");
        std::fs::write(
            &tokens,
            format!("read {READ_TOKEN}\ningest {INGEST_TOKEN}\nadmin {ADMIN_TOKEN}\n"),
        )
        .unwrap();
        let binary = env!("CARGO_BIN_EXE_profusion");
        let mut command = match open_files {
            None => Command::new(binary),
            Some(files) => {
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
                    .arg(binary);
                shell
            }
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--quiet", "--tokens"])
            .arg(&tokens)
            .args(args)
            .arg(&file)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (found, address) = std::sync::mpsc::channel();
        let written = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("on http") {
                    let rest = &line[at + "on ".len()..];
                    let _ = found.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut log = written.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            if let Ok(address) = address.recv_timeout(Duration::from_millis(100)) {
                break address;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited with {status}: {}", log.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "serve never listened: {}",
                log.lock().unwrap()
            );
        };
        Self {
            child,
            url: address,
            log,
            client: reqwest::Client::new(),
        }
    }

    /// `GET path` with `token`: the status and body.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut request = self.client.get(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request).await
    }

    /// `POST path` with `token`, `headers` and `body`: the status and body.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (u16, String) {
        self.post_with(&self.client, path, token, headers, body)
            .await
    }

    /// [`Self::post`] on a connection of its own, for a request the server answers by
    /// closing the connection (a body over the limit): the shared client's pooled
    /// connections stay usable.
    pub async fn post_alone(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (u16, String) {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        self.post_with(&client, path, token, headers, body).await
    }

    async fn post_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (u16, String) {
        let mut request = client.post(format!("{}{path}", self.url)).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        answer(request).await
    }

    /// Stops the server with Ctrl-C and returns what it printed.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log.lock().unwrap().clone()
    }
}

/// The status and body of the answer to `request`; status 0 and the error when there was
/// none (the server closed the connection before reading the whole body, say).
async fn answer(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return (0, format!("{e:?}")),
    };
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The signature headers of `body` signed with `secret` now.
pub fn signed(secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let signature = profusion::serve::sign(secret.as_bytes(), &now, body);
    vec![
        ("x-profusion-timestamp", now),
        ("x-profusion-signature", signature),
    ]
}

/// The value of `field` in the JSON object `text`.
pub fn field(text: &str, path: &[&str]) -> serde_json::Value {
    let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
    for part in path {
        value = value[*part].clone();
    }
    value
}
