//! Attacks on the schema-registry client from the registry's side: one that hangs on an
//! id, and records naming an id the registry does not know.

use std::sync::Arc;
use std::time::Duration;

use crate::common;

use common::registry::TestRegistry;
use profusion::format::SchemaRegistry;

const SCHEMA: &str =
    r#"{"type":"record","name":"e","fields":[{"name":"user_id","type":"string"}]}"#;

/// A registry that never answers for one id fails that lookup after the client's timeout,
/// and holds no other id's lookup up meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_registry_times_out_and_holds_no_other_id_up() {
    let registry = TestRegistry::start().await;
    let known = registry.register("events-value", SCHEMA);
    registry.hang("/schemas/ids/7");
    let client = Arc::new(SchemaRegistry::new(&registry.url).unwrap());
    let hanging = tokio::spawn({
        let client = Arc::clone(&client);
        async move { client.schema_by_id(7).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Well under the client's 10 s request timeout: a lookup waiting for id 7 would not
    // come back in time.
    let other = tokio::time::timeout(Duration::from_secs(5), client.schema_by_id(known))
        .await
        .expect("a lookup of another id waited for the hanging one")
        .unwrap();
    assert_eq!(other.as_deref(), Some(SCHEMA));
    let failed = tokio::time::timeout(Duration::from_secs(60), hanging)
        .await
        .expect("the hanging lookup never gave up")
        .unwrap();
    let error = failed.expect_err("a lookup the registry never answered succeeded");
    assert!(error.to_string().contains("schema id 7"), "{error}");
}

/// Records naming an id the registry does not know ask it once, not once each.
#[tokio::test]
async fn an_unknown_id_is_asked_for_once_while_it_is_remembered() {
    let registry = TestRegistry::start().await;
    let client = SchemaRegistry::new(&registry.url).unwrap();
    for _ in 0..100 {
        assert!(client.schema_by_id(99).await.unwrap().is_none());
    }
    assert_eq!(registry.requests("/schemas/ids/99"), 1);
}
