//! Kafka message values into Arrow batches. A poll's worth of messages is decoded in one
//! go; only when that fails is each message decoded on its own, to find the bad ones and
//! say exactly which record is wrong and why (the table's `bad_data` policy then decides
//! what becomes of them).

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::common::internal_datafusion_err;

use super::avro::{AvroValues, Refusal};
use super::bad_data::{BadRecordKind, Rejected};
use super::debezium::{ChangeOp, unwrap_change};
use super::fetch_queue::MessageHeaders;
use crate::error::Error;
use crate::format::{JsonDecoder, JsonOptions, JsonSchema, JsonSchemaFailure};

/// One message as read: its offset, value (`None` for a tombstone), key and timestamp.
pub struct RawRecord<'a> {
    pub offset: i64,
    pub value: Option<&'a [u8]>,
    pub key: Option<&'a [u8]>,
    /// The Kafka timestamp, in milliseconds since the epoch, when the message has one.
    pub timestamp_millis: Option<i64>,
    pub headers: Option<MessageHeaders<'a>>,
}

/// Decodes the messages of one partition.
pub struct RecordDecoder {
    schema: SchemaRef,
    /// Values longer than this are refused unread.
    max_record_bytes: usize,
    format: ValueFormat,
    /// For JSON values: a schema each must satisfy.
    json_schema: Option<JsonSchema>,
    /// For an upsert topic read with its change kind: tombstones become deletes.
    tombstones: Option<TombstoneRows>,
    /// A poll's JSON values, one after the other with a newline between: the JSON decoder
    /// takes them in one call. Kept from poll to poll.
    joined: Vec<u8>,
    /// Whether JSON timestamps are read on the fast path: off for good once a poll's
    /// values showed a shape it does not read (numbers, say).
    fast_timestamps: bool,
}

/// How a tombstone of an upsert topic becomes a delete: a row of the key's columns, read
/// from the message key as a keyed sink writes it (a single TEXT column as its text, any
/// other key as a JSON object of its columns).
#[derive(Debug, Clone)]
pub struct TombstoneRows {
    key_fields: Vec<String>,
    text_key: bool,
}

impl TombstoneRows {
    /// Deletes keyed by `key_fields` of `schema`.
    pub fn new(key_fields: &[String], schema: &SchemaRef) -> Self {
        let text_key = match key_fields {
            [field] => schema
                .field_with_name(field)
                .is_ok_and(|f| f.data_type() == &DataType::Utf8),
            _ => false,
        };
        Self {
            key_fields: key_fields.to_vec(),
            text_key,
        }
    }

    /// The delete row of a tombstone with `key`, as a JSON object.
    fn row(&self, key: &[u8]) -> Option<Vec<u8>> {
        if !self.text_key {
            return Some(key.to_vec());
        }
        let text = std::str::from_utf8(key).ok()?;
        let mut row = serde_json::Map::new();
        row.insert(self.key_fields[0].clone(), text.into());
        Some(serde_json::Value::Object(row).to_string().into_bytes())
    }
}

/// How message values are read.
pub enum ValueFormat {
    /// One JSON object per message.
    Json,
    /// Debezium change events, their row images JSON objects.
    DebeziumJson,
    /// Avro in the Confluent wire format.
    Avro(AvroValues),
}

/// What became of a poll's worth of records.
pub struct Decoded {
    /// The rows, in record order.
    pub batch: RecordBatch,
    /// Which records the rows are (tombstones and bad records carry none).
    pub kept: Vec<usize>,
    /// The records that could not be decoded, and why.
    pub rejected: Vec<Rejected>,
    /// For change events: the change each row is, in the order of `kept`.
    pub ops: Vec<ChangeOp>,
}

impl RecordDecoder {
    /// A decoder of values in `format` into rows of `schema`.
    pub fn new(schema: SchemaRef, max_record_bytes: usize, format: ValueFormat) -> Self {
        Self {
            schema,
            max_record_bytes,
            format,
            json_schema: None,
            tombstones: None,
            joined: Vec::new(),
            fast_timestamps: true,
        }
    }

    /// Reads tombstones as deletes of their keys, when `tombstones` says how.
    pub fn with_tombstones(mut self, tombstones: Option<TombstoneRows>) -> Self {
        self.tombstones = tombstones;
        self
    }

    /// Validates JSON values (or change event rows) against `schema` before decoding them.
    pub fn with_json_schema(mut self, schema: Option<JsonSchema>) -> Self {
        self.json_schema = schema;
        self
    }

    /// Decodes `records`; a record that cannot be decoded is rejected, not an error. An
    /// error is a failure to decode at all (the schema registry unreachable, say).
    pub fn decode(&mut self, records: &[RawRecord<'_>]) -> Result<Decoded, Error> {
        let mut rejected = Vec::new();
        // Each decodable record: its index, the bytes of its row, its change kind.
        let mut prepared: Vec<(usize, Cow<'_, [u8]>, Option<ChangeOp>)> =
            Vec::with_capacity(records.len());
        // With tombstones read as deletes, every other message is an insert.
        let inserts = self.tombstones.as_ref().map(|_| ChangeOp::Create);
        for (i, record) in records.iter().enumerate() {
            let Some(value) = record.value else {
                let delete = self.tombstones.as_ref().zip(record.key);
                if let Some(row) = delete.and_then(|(tombstones, key)| tombstones.row(key)) {
                    prepared.push((i, Cow::Owned(row), Some(ChangeOp::Delete)));
                }
                continue;
            };
            let ready = if value.len() > self.max_record_bytes {
                Err((
                    BadRecordKind::Oversize,
                    format!(
                        "the value has {} bytes, over the limit of {} ('max_record_bytes')",
                        value.len(),
                        self.max_record_bytes
                    ),
                ))
            } else {
                match &mut self.format {
                    ValueFormat::Json => Ok((Cow::Borrowed(value), inserts)),
                    ValueFormat::Avro(avro) => {
                        avro.check(value)?.map(|()| (Cow::Borrowed(value), None))
                    }
                    ValueFormat::DebeziumJson => {
                        unwrap_change(value).map(|(op, row)| (Cow::Owned(row), Some(op)))
                    }
                }
            };
            let ready = match (ready, &self.json_schema) {
                (Ok((row, op)), Some(schema)) => match schema.check(&row) {
                    // Decoding says exactly what is wrong with a value that is not one
                    // JSON value (empty, not JSON, several objects).
                    Ok(()) | Err(JsonSchemaFailure::NotJson(_)) => Ok((row, op)),
                    Err(JsonSchemaFailure::Violation(reason)) => {
                        Err((BadRecordKind::SchemaViolation, reason))
                    }
                },
                (ready, _) => ready,
            };
            match ready {
                Ok((row, op)) => prepared.push((i, row, op)),
                Err((kind, reason)) => rejected.push(Rejected {
                    index: i,
                    kind,
                    reason,
                }),
            }
        }
        let values: Vec<&[u8]> = prepared.iter().map(|(_, row, _)| row.as_ref()).collect();
        let decoded = self.decode_values(&values);
        let (batch, good) = match decoded {
            Ok(batch) => (batch, prepared.iter().collect::<Vec<_>>()),
            Err(_) => {
                // Some value spoils the batch: decode each alone to find which.
                let mut good = Vec::with_capacity(prepared.len());
                for entry in &prepared {
                    match self.decode_values(&[entry.1.as_ref()]) {
                        Ok(_) => good.push(entry),
                        Err((kind, reason)) => rejected.push(Rejected {
                            index: entry.0,
                            kind,
                            reason,
                        }),
                    }
                }
                rejected.sort_by_key(|r| r.index);
                let values: Vec<&[u8]> = good.iter().map(|(_, row, _)| row.as_ref()).collect();
                let batch = self.decode_values(&values).map_err(|(_, reason)| {
                    Error::DataFusion(internal_datafusion_err!(
                        "records that decode alone fail together: {reason}"
                    ))
                })?;
                (batch, good)
            }
        };
        Ok(Decoded {
            batch,
            kept: good.iter().map(|(i, _, _)| *i).collect(),
            rejected,
            ops: good.iter().filter_map(|(_, _, op)| *op).collect(),
        })
    }

    /// Decodes values, one row each.
    fn decode_values(&mut self, values: &[&[u8]]) -> Result<RecordBatch, Refusal> {
        match &mut self.format {
            ValueFormat::Avro(avro) => avro.decode(values),
            ValueFormat::Json | ValueFormat::DebeziumJson => self.decode_json(values),
        }
    }

    /// Decodes JSON values, one row each, in one call of the JSON decoder.
    fn decode_json(&mut self, values: &[&[u8]]) -> Result<RecordBatch, Refusal> {
        let json = |e: ArrowError| (json_error_kind(&e), e.to_string());
        let options = JsonOptions {
            fast_timestamps: self.fast_timestamps,
            ..JsonOptions::new(values.len().max(1))
        };
        let mut decoder = JsonDecoder::try_new(Arc::clone(&self.schema), options).map_err(json)?;
        let not_one_object = || {
            (
                BadRecordKind::NotOneObject,
                "a message must hold exactly one JSON object".to_string(),
            )
        };
        self.joined.clear();
        for value in values {
            if value.iter().all(u8::is_ascii_whitespace) {
                return Err((BadRecordKind::Empty, "the message is empty".into()));
            }
            self.joined.extend_from_slice(value);
            self.joined.push(b'\n');
        }
        // The decoder stops taking bytes once it holds one row per message: bytes it does
        // not take belong to a message that holds more than one object. (Fewer rows than
        // messages, below, means one spans several.) Either way, each message is then
        // decoded alone to find which.
        if decoder.decode(&self.joined).map_err(json)? < self.joined.len() {
            return Err(not_one_object());
        }
        let flushed = decoder.flush();
        self.fast_timestamps &= decoder.fast_timestamps();
        let batch = flushed
            .map_err(json)?
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.schema)));
        if batch.num_rows() != values.len() {
            return Err(not_one_object());
        }
        for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
            if !field.is_nullable() && column.null_count() > 0 {
                return Err((
                    BadRecordKind::MissingValue,
                    format!("no value for the NOT NULL column {}", field.name()),
                ));
            }
        }
        Ok(batch)
    }
}

/// Whether the JSON reader failed on the syntax or on a value of the wrong type.
fn json_error_kind(error: &ArrowError) -> BadRecordKind {
    let message = error.to_string();
    // The reader names the field whose value it could not convert, or the NOT NULL
    // column it found no value for.
    if message.contains("non-nullable") {
        BadRecordKind::MissingValue
    } else if message.contains("whilst decoding field") {
        BadRecordKind::WrongType
    } else {
        BadRecordKind::InvalidJson
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn decoder() -> RecordDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("amount", DataType::Float64, true),
        ]));
        RecordDecoder::new(schema, 64, ValueFormat::Json)
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
                headers: None,
            })
            .collect()
    }

    #[test]
    fn good_messages_decode_together_and_tombstones_are_skipped() {
        let decoded = decoder()
            .decode(&records(&[
                Some(r#"{"user_id": "a", "amount": 1.5}"#),
                None,
                Some(r#"{"user_id": "b", "extra": true}"#),
            ]))
            .unwrap();
        assert_eq!(decoded.batch.num_rows(), 2);
        assert_eq!(decoded.kept, vec![0, 2]);
        assert!(decoded.rejected.is_empty());
    }

    #[test]
    fn every_kind_of_bad_record_is_rejected_with_its_reason() {
        let decoded = decoder()
            .decode(&records(&[
                Some("{not json"),
                Some(r#"{"amount": 2.0}"#),
                Some(r#"{"user_id": "ok"}"#),
                Some(""),
                Some(r#"{"user_id": "x"} {"user_id": "y"}"#),
                Some(r#"{"user_id": "b", "amount": "lots"}"#),
                Some(&format!(r#"{{"user_id": "{}"}}"#, "z".repeat(80))),
            ]))
            .unwrap();
        assert_eq!(decoded.batch.num_rows(), 1);
        assert_eq!(decoded.kept, vec![2]);
        let kinds: Vec<(usize, BadRecordKind)> =
            decoded.rejected.iter().map(|r| (r.index, r.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (0, BadRecordKind::InvalidJson),
                (1, BadRecordKind::MissingValue),
                (3, BadRecordKind::Empty),
                (4, BadRecordKind::NotOneObject),
                (5, BadRecordKind::WrongType),
                (6, BadRecordKind::Oversize),
            ]
        );
        assert!(
            decoded.rejected[1].reason.contains("user_id"),
            "{}",
            decoded.rejected[1].reason
        );
    }
}
