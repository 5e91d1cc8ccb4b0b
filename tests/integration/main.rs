//! The integration tests, in one test binary so that DataFusion and librdkafka are linked
//! once: pipelines end to end, Kafka (librdkafka's mock cluster and a broker in its own
//! process), profile stores, the REPL and the HTTP server, crash recovery, and the SQL
//! behaviour in `tests/slt` (module `slt`).

mod common;

mod aggregate_checkpoints;
mod checkpoint_damage;
mod checkpoint_failures;
mod consumer_group;
mod crash_recovery;
mod disk_full;
mod embedding;
mod enrich_http_faults;
mod golden_joins;
mod golden_windows;
mod idle_splits;
mod kafka_avro;
mod kafka_bad_data;
mod kafka_bad_data_volume;
mod kafka_broker;
mod kafka_changelog;
mod kafka_commits;
mod kafka_faults;
mod kafka_mock;
mod kafka_sink;
mod kafka_view;
mod lookup_refresh;
mod metrics_exposition;
mod nexmark;
mod pipeline;
mod postgres_store;
mod postgres_tls;
mod profile_state;
mod repl;
mod run_metrics;
mod s3;
mod schema_registry_faults;
mod serve;
mod serve_composite_keys;
mod serve_errors;
mod serve_ingest_limits;
mod serve_kafka;
mod serve_slow_clients;
mod serve_store_reads;
mod serve_tls;
mod slt;
mod view_over_view;
mod window_over_enrichment;
