//! The reading half's thread: a consumer assigned this task's partition of the repartition
//! topic, from where the task's checkpoint left it (or the beginning), decoding frames and
//! handing them on in groups. Frames of another lineage (an earlier run of a group under
//! the same name) are skipped.

use std::time::{Duration, Instant};

use datafusion::common::Result;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::RepartitionTopic;
use super::frame::{Frame, Received};
use crate::connector::kafka::config::{consumer_config, kafka_error};
use crate::connector::kafka::reader::is_transient;
use crate::error::Error;

/// How long the thread waits for a frame before checking whether it is still wanted.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The most frames handed on at once.
const FRAMES_PER_SEND: usize = 64;
/// How often errors librdkafka is recovering from are reported.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// A frame read, with the task that wrote it and its offset in the partition.
#[derive(Debug)]
pub struct ReadFrame {
    pub writer: u32,
    pub frame: Frame,
    pub offset: i64,
}

/// Reads `partition` of `topic` from offset `start` (the beginning when `None`) until
/// `frames` closes.
pub fn read_frames(
    topic: &RepartitionTopic,
    partition: i32,
    start: Option<i64>,
    frames: &mpsc::Sender<Result<Vec<ReadFrame>>>,
) -> Result<(), Error> {
    let name = &topic.name;
    // A saved position the topic no longer holds (retention deleted it) is an error, not a
    // silent jump to the earliest frame still there.
    let mut config = consumer_config(&topic.kafka);
    if start.is_some() {
        config.set("auto.offset.reset", "error");
    }
    let consumer: BaseConsumer = config
        .create()
        .map_err(kafka_error(format!("consumer for {name}/{partition}")))?;
    let mut assignment = TopicPartitionList::new();
    let start = start.map_or(Offset::Beginning, Offset::Offset);
    assignment
        .add_partition_offset(name, partition, start)
        .and_then(|()| consumer.assign(&assignment))
        .map_err(kafka_error(format!("assigning {name}/{partition}")))?;
    let mut read: Vec<ReadFrame> = Vec::with_capacity(FRAMES_PER_SEND);
    let mut warned: Option<Instant> = None;
    let mut foreign = std::collections::HashSet::new();
    while !frames.is_closed() {
        let wait = match read.is_empty() {
            true => POLL_INTERVAL,
            false => Duration::ZERO,
        };
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                let offset = message.offset();
                let Received {
                    lineage,
                    writer,
                    frame,
                } = match Frame::decode(message.payload().unwrap_or_default()) {
                    Ok(received) => received,
                    Err(error) => {
                        let context = format!("{name}/{partition} at offset {offset}");
                        let _ = frames.blocking_send(Err(error.context(context)));
                        return Ok(());
                    }
                };
                if lineage == topic.lineage {
                    read.push(ReadFrame {
                        writer,
                        frame,
                        offset,
                    });
                } else if foreign.insert(lineage) {
                    eprintln!(
                        "{name}/{partition}: skipping frames of another run of the group \
                         (lineage {lineage}, this run's {}): an earlier run under the same \
                         group name, or a process with another --checkpoint-dir",
                        topic.lineage
                    );
                }
                if read.len() < FRAMES_PER_SEND {
                    continue;
                }
            }
            Some(Err(error)) if !is_transient(&error) => {
                return Err(kafka_error(format!("reading {name}/{partition}"))(error));
            }
            Some(Err(error)) => {
                if warned.is_none_or(|at| at.elapsed() > WARNING_INTERVAL) {
                    eprintln!("warning: reading {name}/{partition}: {error} (retrying)");
                    warned = Some(Instant::now());
                }
                continue;
            }
            None if read.is_empty() => continue,
            None => {}
        }
        let group = std::mem::replace(&mut read, Vec::with_capacity(FRAMES_PER_SEND));
        if frames.blocking_send(Ok(group)).is_err() {
            break;
        }
    }
    Ok(())
}
