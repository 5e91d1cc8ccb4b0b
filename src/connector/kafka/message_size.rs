//! The check `serve` makes of webhook events for a Kafka table: each event's message, key
//! and value encoded as the sink writes them, within the producer's `message.max.bytes`.
//! librdkafka refuses a larger message when it is produced, which would fail the whole
//! write the event shares with other requests' events; checked first, it fails its own
//! request (413) and nothing of that request is written.

use std::sync::Mutex;

use datafusion::arrow::array::RecordBatch;

use super::encode::{MessageLayout, ValueEncoder};
use crate::connector::{IngestCheck, IngestRefusal};

/// librdkafka's `message.max.bytes` unless the table sets `'properties.message.max.bytes'`.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// What librdkafka adds to a message's key and value when it checks the size: the largest
/// record framing of the v2 format (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`).
const RECORD_OVERHEAD: usize = 36;

/// Each message within `message.max.bytes`.
pub struct MessageSizeCheck {
    topic: String,
    layout: MessageLayout,
    /// An encoder like the sink's (an Avro one under a placeholder id, of the same width).
    values: Mutex<ValueEncoder>,
    max_bytes: usize,
}

impl MessageSizeCheck {
    pub fn new(
        topic: String,
        layout: MessageLayout,
        values: ValueEncoder,
        max_bytes: usize,
    ) -> Self {
        Self {
            topic,
            layout,
            values: Mutex::new(values),
            max_bytes,
        }
    }
}

impl std::fmt::Debug for MessageSizeCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSizeCheck")
            .field("topic", &self.topic)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl IngestCheck for MessageSizeCheck {
    fn check(&self, events: &RecordBatch) -> Result<(), IngestRefusal> {
        let mut values = crate::stream::lock(&self.values);
        let messages = self.layout.encode(events, &mut values).map_err(|e| {
            IngestRefusal::Unavailable(format!("encoding for topic {}: {e}", self.topic))
        })?;
        for i in 0..messages.len() {
            let message = messages.message(i);
            let size = message.key.map_or(0, <[u8]>::len)
                + message.value.map_or(0, <[u8]>::len)
                + RECORD_OVERHEAD;
            if size > self.max_bytes {
                return Err(IngestRefusal::TooLarge(format!(
                    "event {i} is a message of {size} bytes, over the {} bytes topic {} takes (message.max.bytes); nothing of this request was written",
                    self.max_bytes, self.topic
                )));
            }
        }
        Ok(())
    }
}
