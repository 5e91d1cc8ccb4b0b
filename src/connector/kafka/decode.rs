//! Kafka message values into Arrow batches, with the table's `bad_data` policy. A poll's
//! worth of messages is decoded in one go; only when that fails is each message decoded on
//! its own, to find the bad ones and say exactly which record is wrong and why.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::ReaderBuilder;

use super::options::BadDataPolicy;
use crate::error::Error;

/// One message as read: its offset, value (`None` for a tombstone), key and timestamp.
pub struct RawRecord<'a> {
    pub offset: i64,
    pub value: Option<&'a [u8]>,
    pub key: Option<&'a [u8]>,
    /// The Kafka timestamp, in milliseconds since the epoch, when the message has one.
    pub timestamp_millis: Option<i64>,
}

/// Decodes the messages of one partition.
pub struct RecordDecoder {
    schema: SchemaRef,
    policy: BadDataPolicy,
    topic: String,
    partition: i32,
    /// Records skipped under `bad_data = 'drop'`.
    pub dropped: u64,
}

impl RecordDecoder {
    pub fn new(schema: SchemaRef, policy: BadDataPolicy, topic: String, partition: i32) -> Self {
        Self {
            schema,
            policy,
            topic,
            partition,
            dropped: 0,
        }
    }

    /// The rows of `records`, and which records they are (tombstones carry no row).
    pub fn decode(
        &mut self,
        records: &[RawRecord<'_>],
    ) -> Result<(RecordBatch, Vec<usize>), Error> {
        let (kept, values): (Vec<usize>, Vec<&[u8]>) = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.value.map(|v| (i, v)))
            .unzip();
        if let Ok(batch) = self.decode_values(&values) {
            return Ok((batch, kept));
        }
        let mut good = Vec::with_capacity(values.len());
        let mut kept = Vec::with_capacity(values.len());
        for (i, record) in records.iter().enumerate() {
            let Some(value) = record.value else { continue };
            match self.decode_values(&[value]) {
                Ok(_) => {
                    good.push(value);
                    kept.push(i);
                }
                Err(reason) => match self.policy {
                    BadDataPolicy::Fail => {
                        return Err(Error::BadRecord {
                            topic: self.topic.clone(),
                            partition: self.partition,
                            offset: record.offset,
                            reason: reason.to_string(),
                        });
                    }
                    BadDataPolicy::Drop => self.dropped += 1,
                },
            }
        }
        let batch = self.decode_values(&good).map_err(|e| Error::BadRecord {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: records.first().map_or(-1, |r| r.offset),
            reason: format!("records that decode alone fail together: {e}"),
        })?;
        Ok((batch, kept))
    }

    /// Decodes JSON values, one row each.
    fn decode_values(&self, values: &[&[u8]]) -> Result<RecordBatch, ArrowError> {
        let mut decoder = ReaderBuilder::new(Arc::clone(&self.schema))
            .with_batch_size(values.len().max(1))
            .build_decoder()?;
        for value in values {
            if value.iter().all(u8::is_ascii_whitespace) {
                return Err(ArrowError::JsonError("the message is empty".into()));
            }
            // The decoder stops taking bytes once it holds one row per message: a message
            // it does not take whole holds more than one object.
            if decoder.decode(value)? < value.len() {
                return Err(ArrowError::JsonError(
                    "a message must hold exactly one JSON object".into(),
                ));
            }
            decoder.decode(b"\n")?;
        }
        let batch = decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.schema)));
        if batch.num_rows() != values.len() {
            return Err(ArrowError::JsonError(
                "a message must hold exactly one JSON object".into(),
            ));
        }
        for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(ArrowError::JsonError(format!(
                    "no value for the NOT NULL column {}",
                    field.name()
                )));
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn decoder(policy: BadDataPolicy) -> RecordDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("amount", DataType::Float64, true),
        ]));
        RecordDecoder::new(schema, policy, "events".into(), 3)
    }

    fn records<'a>(values: &[Option<&'a str>]) -> Vec<RawRecord<'a>> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| RawRecord {
                offset: 100 + i as i64,
                value: v.map(str::as_bytes),
                key: None,
                timestamp_millis: None,
            })
            .collect()
    }

    #[test]
    fn good_messages_decode_together_and_tombstones_are_skipped() {
        let (batch, kept) = decoder(BadDataPolicy::Fail)
            .decode(&records(&[
                Some(r#"{"user_id": "a", "amount": 1.5}"#),
                None,
                Some(r#"{"user_id": "b", "extra": true}"#),
            ]))
            .unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(kept, vec![0, 2]);
    }

    #[test]
    fn fail_names_the_first_bad_record() {
        let error = decoder(BadDataPolicy::Fail)
            .decode(&records(&[
                Some(r#"{"user_id": "a"}"#),
                Some(r#"{"user_id": "b", "amount": "lots"}"#),
                Some("not json"),
            ]))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("bad record in topic events, partition 3, offset 101:"),
            "{error}"
        );
    }

    #[test]
    fn drop_skips_every_kind_of_bad_record_and_counts_it() {
        let mut decoder = decoder(BadDataPolicy::Drop);
        let (batch, kept) = decoder
            .decode(&records(&[
                Some("{not json"),
                Some(r#"{"amount": 2.0}"#),
                Some(r#"{"user_id": "ok"}"#),
                Some(""),
                Some(r#"{"user_id": "x"} {"user_id": "y"}"#),
            ]))
            .unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(kept, vec![2]);
        assert_eq!(decoder.dropped, 4);
    }
}
