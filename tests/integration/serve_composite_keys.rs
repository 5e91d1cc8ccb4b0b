//! An attack on `serve`'s profile cache: two rows of a view keyed by two text columns whose
//! values differ only in where a U+001F sits, `("a␟b", "c")` and `("a", "b␟c")`. A cache that
//! joins the key's values with that separator gives both one entry, and a client asking
//! for one user's row is served the other's once it is cached.

use crate::common;

use common::server::{READ_TOKEN, Server, field};

#[tokio::test]
async fn keys_that_join_to_the_same_text_are_two_rows_in_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pairs.db");
    let pipeline = format!(
        // The rows are in the view's own query: an INSERT into a table the view reads would
        // race the view's one run.
        "CREATE MATERIALIZED VIEW totals PRIMARY KEY (a, b)
           WITH (connector = 'sqlite', path = '{}') AS
         SELECT a, b, sum(n) AS n
         FROM (VALUES ('a\u{1f}b', 'c', 1), ('a', 'b\u{1f}c', 2)) AS pairs (a, b, n)
         GROUP BY a, b;",
        db.display()
    );
    let server = Server::start(dir.path(), &pipeline, &[]);
    let read = |key: &'static str| {
        let server = &server;
        async move {
            let path = format!("/v1/views/totals/{}", urlencoding(key));
            server.get(&path, Some(READ_TOKEN)).await
        }
    };
    // The view is written once serve has started (which, with the rest of the suite running
    // on the same cores, may take a while).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, text) = read(r#"["a","b\u001fc"]"#).await;
        if status == 200 {
            break;
        }
        if std::time::Instant::now() > deadline {
            panic!("the view stayed empty: {status} {text}\n{}", server.stop());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Each read caches its row; the other key must not be served from that entry.
    for _ in 0..2 {
        let (status, first) = read(r#"["a\u001fb","c"]"#).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(field(&first, &["row", "n"]), 1, "{first}");
        let (status, second) = read(r#"["a","b\u001fc"]"#).await;
        assert_eq!(status, 200, "{second}");
        assert_eq!(field(&second, &["row", "n"]), 2, "{second}");
    }
    server.stop();
}

/// `text` as a URL path segment.
fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
