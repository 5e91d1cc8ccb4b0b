//! A small Confluent-compatible schema registry for tests, on 127.0.0.1: subjects, their
//! versions, and schemas by id (the part of the registry's HTTP API Avro clients use).
//! It counts the requests for each path, so tests can check what clients cache.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    /// Schemas by id (ids start at 1).
    schemas: Vec<String>,
    /// Each subject's versions, as schema ids.
    subjects: BTreeMap<String, Vec<u32>>,
    requests: BTreeMap<String, usize>,
    /// Paths answered never: the connection stays open, silent.
    hanging: Vec<String>,
}

/// A running registry.
#[derive(Clone)]
pub struct TestRegistry {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl TestRegistry {
    /// Starts a registry on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let serving = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&serving)));
            }
        });
        Self { url, state }
    }

    /// Registers `schema` under `subject` directly; its id.
    pub fn register(&self, subject: &str, schema: &str) -> u32 {
        register(&mut self.state.lock().unwrap(), subject, schema)
    }

    /// Makes requests for `path` hang: read, never answered.
    pub fn hang(&self, path: &str) {
        self.state.lock().unwrap().hanging.push(path.to_string());
    }

    /// How many requests `path` has had.
    pub fn requests(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// The ids under `subject`.
    pub fn versions(&self, subject: &str) -> Vec<u32> {
        self.state
            .lock()
            .unwrap()
            .subjects
            .get(subject)
            .cloned()
            .unwrap_or_default()
    }
}

fn register(state: &mut State, subject: &str, schema: &str) -> u32 {
    let id = match state.schemas.iter().position(|s| s == schema) {
        Some(index) => index as u32 + 1,
        None => {
            state.schemas.push(schema.to_string());
            state.schemas.len() as u32
        }
    };
    let versions = state.subjects.entry(subject.to_string()).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    id
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    let header_end = loop {
        let n = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        request.extend_from_slice(&buffer[..n]);
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..header_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while request.len() < header_end + length {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let body = &request[header_end..header_end + length];
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if state.lock().unwrap().hanging.iter().any(|p| p == path) {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        return;
    }
    let (status, answer) = answer(&mut state.lock().unwrap(), method, path, body);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

fn answer(state: &mut State, method: &str, path: &str, body: &[u8]) -> (&'static str, String) {
    *state.requests.entry(path.to_string()).or_default() += 1;
    let not_found = |code: u32, message: &str| {
        (
            "404 Not Found",
            json!({"error_code": code, "message": message}).to_string(),
        )
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["schemas", "ids", id]) => {
            let schema = id
                .parse::<usize>()
                .ok()
                .and_then(|id| state.schemas.get(id.wrapping_sub(1)));
            match schema {
                Some(schema) => ("200 OK", json!({ "schema": schema }).to_string()),
                None => not_found(40403, "Schema not found"),
            }
        }
        ("GET", ["subjects"]) => {
            let subjects: Vec<&String> = state.subjects.keys().collect();
            ("200 OK", json!(subjects).to_string())
        }
        ("GET", ["subjects", subject, "versions"]) => match state.subjects.get(*subject) {
            Some(ids) => (
                "200 OK",
                json!((1..=ids.len()).collect::<Vec<_>>()).to_string(),
            ),
            None => not_found(40401, "Subject not found"),
        },
        ("GET", ["subjects", subject, "versions", version]) => {
            let Some(ids) = state.subjects.get(*subject) else {
                return not_found(40401, "Subject not found");
            };
            let index = match *version {
                "latest" => ids.len(),
                number => number.parse().unwrap_or(0),
            };
            match index.checked_sub(1).and_then(|i| ids.get(i)) {
                Some(&id) => (
                    "200 OK",
                    json!({"subject": subject, "version": index, "id": id,
                           "schema": state.schemas[id as usize - 1]})
                    .to_string(),
                ),
                None => not_found(40402, "Version not found"),
            }
        }
        ("POST", ["subjects", subject, "versions"]) => {
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            match request.get("schema").and_then(Value::as_str) {
                Some(schema) => {
                    let id = register(state, subject, schema);
                    ("200 OK", json!({ "id": id }).to_string())
                }
                None => (
                    "422 Unprocessable Entity",
                    json!({"error_code": 42201, "message": "Invalid schema"}).to_string(),
                ),
            }
        }
        _ => not_found(404, "Not found"),
    }
}
