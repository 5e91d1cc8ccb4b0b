//! `profusion bench --kafka HOST:PORT`: the Kafka source against a real broker, on one
//! worker thread (each partition is read on its own blocking thread, as in a pipeline).
//!
//! Events of about 160 bytes are produced to a new four-partition topic before the clock
//! starts (with `--workers N`, the workers share its partitions). Then, each timed: `kafka_consume`, a bare `BaseConsumer` reading them all (the
//! client's ceiling); `kafka_json`, the Kafka table decoding them into Arrow batches; and
//! `kafka_tumble`, the same through `TUMBLE(1 minute)` per user. The tables are read as
//! snapshots, up to the end offset seen when the query starts: the last message of each
//! partition is a sentinel produced on its own, so that brokers reporting the start of the last record
//! batch as the end offset (tansu 0.6) still count every event.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::harness::{Run, TUMBLE, WINDOW_COLUMNS, best_of, into_blackhole, setup, timed_after};
use crate::error::{Error, Result};
use crate::pipeline::session::SessionOptions;
use crate::stream::SourceReads;

/// The events' columns: about 160 bytes of JSON each.
const COLUMNS: &str = "user_id TEXT NOT NULL, session_id TEXT, event_id TEXT NOT NULL,
  event_type TEXT NOT NULL, amount DOUBLE, page TEXT, ts TIMESTAMP NOT NULL";
/// How long a fetch may wait for more data, for the bare consumer and the tables alike.
/// Kafka answers a fetch as soon as it has data; tansu 0.6 waits out the whole
/// `fetch.wait.max.ms` (500 ms by default), which caps a consumer at about 100k messages/s.
const FETCH_WAIT_MAX_MS: &str = "10";
/// How long a blocking Kafka call may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The Kafka benchmarks' settings.
pub struct KafkaBench<'a> {
    pub options: &'a SessionOptions,
    pub servers: &'a str,
    pub events: u64,
    pub users: u64,
    pub repeat: u32,
    pub dir: &'a Path,
}

/// Partitions of the benchmark topic: what the workers of `--workers` share.
const PARTITIONS: i32 = 4;

fn kafka_failed(context: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> Error + '_ {
    move |source| Error::Kafka {
        context: context.to_string(),
        source,
    }
}

impl KafkaBench<'_> {
    /// Produces the events, then runs the selected benchmarks.
    pub async fn run(&self, selected: &dyn Fn(&str) -> bool) -> Result<()> {
        let topic = format!("profusion-bench-{}", std::process::id());
        let bytes = self.produce(&topic).await?;
        let average = bytes as f64 / self.events as f64;
        if selected("kafka_consume") {
            let run = best_of(self.repeat, || self.consume_only(&topic)).await?;
            run.report(
                "kafka_consume",
                &format!("one BaseConsumer, messages of {average:.0} bytes"),
            );
        }
        let snapshot = SessionOptions {
            reads: SourceReads::Snapshot,
            ..self.options.clone()
        };
        let table = format!(
            "CREATE TABLE events ({COLUMNS}, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
               WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{}',
                     'properties.fetch.wait.max.ms' = '{FETCH_WAIT_MAX_MS}');",
            self.servers
        );
        if selected("kafka_json") {
            let query = format!(
                "{table} {}",
                into_blackhole("SELECT * FROM events", COLUMNS)
            );
            let run = best_of(self.repeat, || timed_after(&snapshot, "", &query)).await?;
            run.report("kafka_json", "Kafka -> JSON decode -> Arrow batches");
        }
        if selected("kafka_tumble") {
            let query = format!("{table} {}", into_blackhole(TUMBLE, WINDOW_COLUMNS));
            let run = best_of(self.repeat, || timed_after(&snapshot, "", &query)).await?;
            run.report(
                "kafka_tumble",
                "Kafka -> JSON decode -> TUMBLE(1m) count, sum per user",
            );
        }
        Ok(())
    }

    /// Creates `topic` and fills it with the events and a last sentinel; their bytes.
    async fn produce(&self, topic: &str) -> Result<u64> {
        let lines = self.dir.join("kafka_events.jsonl");
        setup(
            &SessionOptions::default(),
            &format!(
                "CREATE TABLE generated ({COLUMNS}) WITH (connector = 'datagen', count = {},
                   users = {}, seed = 1, out_of_order = '2s');
                 CREATE TABLE out ({COLUMNS}) WITH (connector = 'file', path = '{}', format = 'json');
                 INSERT INTO out SELECT * FROM generated;",
                self.events,
                self.users,
                lines.display()
            ),
        )
        .await?;
        create_topic(self.servers, topic, PARTITIONS).await?;
        let (servers, topic) = (self.servers.to_string(), topic.to_string());
        let started = Instant::now();
        let bytes = tokio::task::spawn_blocking(move || produce_lines(&servers, &topic, &lines))
            .await
            .map_err(|e| Error::Io {
                context: "producing the benchmark events".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        println!(
            "(produced {} events, {:.1} MB, to the broker in {:.1}s)",
            self.events,
            bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        Ok(bytes)
    }

    /// Reads every event with a bare consumer.
    async fn consume_only(&self, topic: &str) -> Result<Run> {
        let (servers, topic, events) = (self.servers.to_string(), topic.to_string(), self.events);
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .set("group.id", "profusion-bench")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
                .create()
                .map_err(kafka_failed("creating a consumer"))?;
            let started = Instant::now();
            let mut assignment = TopicPartitionList::new();
            (0..PARTITIONS)
                .try_for_each(|p| assignment.add_partition_offset(&topic, p, Offset::Beginning))
                .and_then(|()| consumer.assign(&assignment))
                .map_err(kafka_failed("assigning the benchmark topic"))?;
            let (mut read, mut bytes) = (0u64, 0u64);
            while read < events {
                match consumer.poll(TIMEOUT) {
                    Some(Ok(message)) => {
                        read += 1;
                        bytes += message.payload_len() as u64;
                    }
                    Some(Err(error)) => return Err(kafka_failed("reading")(error)),
                    None => {
                        return Err(Error::Io {
                            context: "reading the benchmark topic".into(),
                            source: std::io::Error::other(format!("stalled after {read} messages")),
                        });
                    }
                }
            }
            let elapsed = started.elapsed();
            Ok(Run {
                events: read,
                elapsed,
                median: elapsed,
                peak_state_bytes: 0,
                output_bytes: bytes,
                rows_out: 0,
            })
        })
        .await
        .map_err(|e| Error::Io {
            context: "consuming the benchmark topic".into(),
            source: std::io::Error::other(e.to_string()),
        })?
    }
}

/// Creates `topic` with `partitions` partitions.
pub(super) async fn create_topic(servers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .map_err(kafka_failed("creating an admin client"))?;
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(kafka_failed("creating the benchmark topic"))?;
    for result in created {
        result.map_err(|(_, code)| Error::Kafka {
            context: format!("creating topic {topic}"),
            source: rdkafka::error::KafkaError::AdminOp(code),
        })?;
    }
    Ok(())
}

/// Produces each line of the file at `path` to `topic`, then a sentinel on its own in
/// each partition.
fn produce_lines(servers: &str, topic: &str, path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(kafka_failed("creating a producer"))?;
    let send = |value: &str| send_queued(&producer, BaseRecord::to(topic).payload(value));
    let mut bytes = 0u64;
    let mut last = "";
    for line in text.lines() {
        send(line)?;
        bytes += line.len() as u64;
        last = line;
    }
    producer.flush(TIMEOUT).map_err(kafka_failed("flushing"))?;
    // The same event again, alone in each partition's last record batch.
    for partition in 0..PARTITIONS {
        send_queued(
            &producer,
            BaseRecord::to(topic).partition(partition).payload(last),
        )?;
        producer.flush(TIMEOUT).map_err(kafka_failed("flushing"))?;
    }
    Ok(bytes)
}

/// Sends `record`, polling the producer while its queue is full.
pub(super) fn send_queued(producer: &BaseProducer, record: BaseRecord<'_, (), str>) -> Result<()> {
    let mut record = record;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((error, back))
                if error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
            {
                producer.poll(Duration::from_millis(1));
                record = back;
            }
            Err((error, _)) => return Err(kafka_failed("producing")(error)),
        }
    }
}
