//! A producer that knows which of its messages the broker has acknowledged: the Kafka
//! sink and the dead-letter queue wait on it before counting anything as written.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::Notify;

/// A producer tracking its deliveries.
pub type TrackedProducer = ThreadedProducer<Deliveries>;

/// A message with its key and value as bytes.
pub type ByteRecord<'a> = BaseRecord<'a, [u8], [u8]>;

/// A refused send: why, and the record back, to retry.
pub type Refused<'a> = (KafkaError, ByteRecord<'a>);

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
