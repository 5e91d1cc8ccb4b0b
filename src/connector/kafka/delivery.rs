//! A producer that knows which of its messages the broker has acknowledged: the Kafka
//! sink and the dead-letter queue wait on it before counting anything as written.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;

/// A producer tracking its deliveries.
pub type TrackedProducer = ThreadedProducer<Deliveries>;

/// A message with its key and value as bytes.
pub type ByteRecord<'a> = BaseRecord<'a, [u8], [u8]>;

/// A refused send: why, and the record back, to retry.
pub type Refused<'a> = (KafkaError, ByteRecord<'a>);

/// How long to wait before retrying a record librdkafka's full queue refused.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// The messages librdkafka has not yet acknowledged, and the first that failed.
#[derive(Default)]
pub struct Deliveries {
    in_flight: AtomicI64,
    failure: Mutex<Option<KafkaError>>,
    settled: Notify,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, _)) = result {
            let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert_with(|| error.clone());
        }
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_one();
        }
    }
}

impl Deliveries {
    /// Sends `record`, counting it until it is acknowledged; a full local queue is
    /// reported as it is, with the record handed back to retry.
    #[allow(clippy::result_large_err)]
    pub fn send<'a>(producer: &TrackedProducer, record: ByteRecord<'a>) -> Result<(), Refused<'a>> {
        let deliveries = producer.context();
        deliveries.in_flight.fetch_add(1, Ordering::AcqRel);
        producer.send(record).inspect_err(|_| {
            deliveries.in_flight.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Sends `record`, waiting while librdkafka's local queue is full; any other refusal is
    /// the error.
    pub async fn send_queued(
        producer: &TrackedProducer,
        mut record: ByteRecord<'_>,
    ) -> Result<(), KafkaError> {
        loop {
            match Self::send(producer, record) {
                Ok(()) => return Ok(()),
                Err((error, back)) if is_queue_full(&error) => {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// [`Self::send_queued`] on a thread that may block (a partition's reading thread).
    pub fn send_queued_blocking(
        producer: &TrackedProducer,
        mut record: ByteRecord<'_>,
    ) -> Result<(), KafkaError> {
        loop {
            match Self::send(producer, record) {
                Ok(()) => return Ok(()),
                Err((error, back)) if is_queue_full(&error) => {
                    record = back;
                    std::thread::sleep(QUEUE_FULL_BACKOFF);
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// The first delivery failure since the last call, if any.
    pub fn take_failure(&self) -> Option<KafkaError> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// True while messages await acknowledgement.
    pub fn pending(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Waits until every message sent so far is acknowledged; the first failure, if any.
    pub async fn settled(&self) -> Result<(), KafkaError> {
        loop {
            let notified = self.settled.notified();
            if let Some(error) = self.take_failure() {
                return Err(error);
            }
            if !self.pending() {
                return Ok(());
            }
            // A notification between the check and here is kept by `notify_one`.
            notified.await;
        }
    }
}

fn is_queue_full(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
}
