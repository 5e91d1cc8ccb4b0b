//! [`FetchQueue`]: the messages librdkafka has fetched for a partition's consumer, taken
//! from its queue many at a time with `rd_kafka_consume_batch_queue`. rdkafka's `poll`
//! hands out one message per call, each wrapped in an event of its own (a clock read, a
//! queue lock and a reference-counted allocation per message); here one call takes what is
//! fetched, and a message is read in place through [`FetchedMessage`] until the batch is
//! cleared.
//!
//! This is the one place the Kafka source calls librdkafka's C API directly: rdkafka 0.39
//! does not wrap the batch call, and its message and header types cannot be built from a
//! raw message.

use std::borrow::Cow;
use std::ffi::{CStr, c_char, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// The fetched messages of one consumer's queue, taken in batches; borrows the consumer,
/// which must outlive every message taken.
pub struct FetchQueue<'c> {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// The messages taken since the last [`Self::clear`]; each destroyed there.
    taken: Vec<*mut rd::rd_kafka_message_t>,
    consumer: PhantomData<&'c BaseConsumer>,
}

// SAFETY: librdkafka's queues and messages may be used from any thread; the queue is used
// by the one thread that owns this value.
unsafe impl Send for FetchQueue<'_> {}

impl<'c> FetchQueue<'c> {
    /// The queue `consumer`'s fetched messages arrive on (its group's queue, to which the
    /// consumer's main queue is forwarded); `None` if the consumer has no group.
    pub fn of(consumer: &'c BaseConsumer) -> Option<Self> {
        // SAFETY: the client pointer is live for as long as `consumer`, which outlives
        // the queue; the queue handle is released in `drop`.
        let queue = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        Some(Self {
            queue: NonNull::new(queue)?,
            taken: Vec::new(),
            consumer: PhantomData,
        })
    }

    /// Waits up to `wait` for a first message if none is held, then takes what is already
    /// fetched without waiting, until `room` messages are held; how many it took.
    pub fn take(&mut self, wait: Duration, room: usize) -> usize {
        let before = self.taken.len();
        if self.taken.is_empty() && room > 0 {
            self.consume(wait, 1);
        }
        if !self.taken.is_empty() {
            self.consume(Duration::ZERO, room.saturating_sub(self.taken.len()));
        }
        self.taken.len() - before
    }

    /// Takes up to `count` messages, waiting at most `wait` for them all.
    fn consume(&mut self, wait: Duration, count: usize) {
        if count == 0 {
            return;
        }
        self.taken.reserve(count);
        let at = self.taken.len();
        let timeout = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: librdkafka writes at most `count` message pointers into the spare
        // capacity reserved above and returns how many (or -1 on an error, taken as none).
        let got = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout,
                self.taken.as_mut_ptr().add(at),
                count,
            )
        };
        if got > 0 {
            // SAFETY: `got` pointers past `at` were just written.
            unsafe { self.taken.set_len(at + got as usize) };
        }
    }

    /// The messages held, in the order fetched.
    pub fn messages(&self) -> impl Iterator<Item = FetchedMessage<'_>> {
        self.taken.iter().map(|&message| FetchedMessage {
            // SAFETY: a taken message stays valid until `clear` destroys it, which needs
            // `&mut self` and so ends every borrow of it first.
            message: unsafe { &*message },
        })
    }

    /// Gives every message held back to librdkafka.
    pub fn clear(&mut self) {
        for message in self.taken.drain(..) {
            // SAFETY: each taken message is destroyed once, here.
            unsafe { rd::rd_kafka_message_destroy(message) };
        }
    }
}

impl Drop for FetchQueue<'_> {
    fn drop(&mut self) {
        self.clear();
        // SAFETY: the handle from `rd_kafka_queue_get_consumer` is released once.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// One fetched message, read in place.
#[derive(Clone, Copy)]
pub struct FetchedMessage<'a> {
    message: &'a rd::rd_kafka_message_t,
}

impl<'a> FetchedMessage<'a> {
    /// The error this message stands for (a fetch that failed), if it is one.
    pub fn error(&self) -> Option<KafkaError> {
        let code = self.message.err;
        (code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .then(|| KafkaError::MessageConsumption(RDKafkaErrorCode::from(code)))
    }

    pub fn partition(&self) -> i32 {
        self.message.partition
    }

    /// The name of the message's topic, as bytes.
    pub fn topic(&self) -> Option<&'a [u8]> {
        if self.message.rkt.is_null() {
            return None;
        }
        // SAFETY: a fetched message holds its topic handle, whose name lives as long.
        let name = unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.message.rkt)) };
        Some(name.to_bytes())
    }

    pub fn offset(&self) -> i64 {
        self.message.offset
    }

    pub fn payload(&self) -> Option<&'a [u8]> {
        // SAFETY: librdkafka's payload pointer and length describe the message's value.
        unsafe { bytes_at(self.message.payload, self.message.len) }
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: as for the payload.
        unsafe { bytes_at(self.message.key, self.message.key_len) }
    }

    /// The Kafka timestamp in milliseconds since the epoch, when the message has one.
    pub fn timestamp_millis(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live; `kind` is written.
        let millis = unsafe { rd::rd_kafka_message_timestamp(self.message, &mut kind) };
        let available = kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        (available && millis != -1).then_some(millis)
    }

    /// The message's headers, if it has any.
    pub fn headers(&self) -> Option<MessageHeaders<'a>> {
        let mut headers = std::ptr::null_mut();
        // SAFETY: the message is live; librdkafka parses its headers once and keeps them
        // with the message.
        let found = unsafe { rd::rd_kafka_message_headers(self.message, &mut headers) };
        if found != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        Some(MessageHeaders {
            headers: NonNull::new(headers)?,
            message: PhantomData,
        })
    }
}

/// The bytes at `data`, `len` long; `None` for a null pointer.
///
/// # Safety
/// `data` must be null or point to `len` bytes that live for `'a`.
unsafe fn bytes_at<'a>(data: *mut c_void, len: usize) -> Option<&'a [u8]> {
    // SAFETY: as the caller promises.
    (!data.is_null()).then(|| unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// The headers of a fetched message.
#[derive(Clone, Copy)]
pub struct MessageHeaders<'a> {
    headers: NonNull<rd::rd_kafka_headers_t>,
    message: PhantomData<&'a rd::rd_kafka_message_t>,
}

/// One header: its name and its value (`None` for a header without one).
pub struct MessageHeader<'a> {
    /// The name, read as UTF-8 (a byte that is not is replaced).
    pub name: Cow<'a, str>,
    pub value: Option<&'a [u8]>,
}

impl<'a> MessageHeaders<'a> {
    /// Every header, in the order the message carries them.
    pub fn iter(&self) -> impl Iterator<Item = MessageHeader<'a>> + 'a {
        let headers = self.headers;
        (0..).map_while(move |index| {
            let mut name: *const c_char = std::ptr::null();
            let mut value: *const c_void = std::ptr::null();
            let mut len = 0usize;
            // SAFETY: the headers live as long as their message ('a); librdkafka writes
            // the name, value and length of header `index`, or says there is none.
            let found = unsafe {
                rd::rd_kafka_header_get_all(
                    headers.as_ptr(),
                    index,
                    &mut name,
                    &mut value,
                    &mut len,
                )
            };
            if found != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return None;
            }
            Some(MessageHeader {
                // SAFETY: librdkafka's header names are NUL-terminated and live with the
                // message; values are as for payloads.
                name: unsafe { CStr::from_ptr(name) }.to_string_lossy(),
                value: unsafe { bytes_at(value.cast_mut(), len) },
            })
        })
    }
}
