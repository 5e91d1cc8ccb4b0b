//! Bits of HTTP for the tests' own little servers (APIs that `enrich_http` calls).

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Reads a request's head (up to its blank line) and returns its path; `None` when the
/// client went away first.
pub async fn request_path(socket: &mut TcpStream) -> Option<String> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let head = String::from_utf8_lossy(&request);
    Some(head.split(' ').nth(1).unwrap_or("/").to_string())
}
