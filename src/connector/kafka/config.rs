//! The one place Kafka client configurations are built, for consumers and producers: the
//! table's servers (and group), the user's `'properties.*'` (security, SASL, SSL and any
//! other librdkafka property), then the settings correctness needs, which nothing overrides.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;

use super::options::KafkaOptions;
use crate::error::Error;

/// How long a metadata or offset lookup may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Wraps a client error with what was being done.
pub fn kafka_error(context: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
    let context = context.into();
    move |source| Error::Kafka { context, source }
}

/// Settings a reader needs for its guarantees: offsets are committed by the pipeline, never
/// by librdkafka on its own, and the end of a partition is not an event.
const CONSUMER_FIXED: [(&str, &str); 2] = [
    ("enable.auto.commit", "false"),
    ("enable.partition.eof", "false"),
];

/// The configuration of a consumer that reads partitions it is assigned (no subscription).
pub fn consumer_config(options: &KafkaOptions) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.bootstrap_servers)
        // Partitions are assigned explicitly, so the group only names whose offsets these
        // are; librdkafka still wants one.
        .set(
            "group.id",
            options.group_id.as_deref().unwrap_or("profusion"),
        )
        .set("auto.offset.reset", "earliest");
    for (key, value) in &options.properties {
        config.set(key, value);
    }
    for (key, value) in CONSUMER_FIXED {
        config.set(key, value);
    }
    config
}

/// Settings a writer needs for its guarantees: retries never duplicate or reorder messages.
const PRODUCER_FIXED: [(&str, &str); 1] = [("enable.idempotence", "true")];

/// The configuration of a producer writing the table's topic.
pub fn producer_config(options: &KafkaOptions) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &options.bootstrap_servers);
    for (key, value) in &options.properties {
        config.set(key, value);
    }
    for (key, value) in PRODUCER_FIXED {
        config.set(key, value);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::WithOptions;

    #[test]
    fn user_properties_pass_through_but_cannot_turn_on_auto_commit() {
        let mut with = WithOptions::new("CREATE TABLE t", 1);
        for (k, v) in [
            ("topic", "events"),
            ("bootstrap.servers", "127.0.0.1:9092"),
            ("properties.security.protocol", "SASL_SSL"),
            ("properties.enable.auto.commit", "true"),
        ] {
            with.insert(k.into(), v.into()).unwrap();
        }
        let options = KafkaOptions::parse(&mut with).unwrap();
        let config = consumer_config(&options);
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        let producer = producer_config(&options);
        assert_eq!(producer.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(producer.get("enable.idempotence"), Some("true"));
    }
}
