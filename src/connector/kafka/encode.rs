//! Turning a sink's rows into Kafka messages: the value is the table's value columns as one
//! JSON object; the key comes from a `METADATA FROM 'key'` column, or else from the key
//! columns (`'key.fields'` or the primary key: a single TEXT column as its text, anything
//! else as a JSON object); the Kafka timestamp from a `METADATA FROM 'timestamp'` column.

use std::ops::Range;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use datafusion::common::{Result, plan_err};

use super::metadata::MetadataColumns;
use crate::format::encode_json_lines;

/// Where a message's key comes from.
#[derive(Debug, Clone)]
enum KeySource {
    /// No key: librdkafka spreads messages over the partitions.
    None,
    /// A column's text or bytes as they are.
    Raw(usize),
    /// The columns as one JSON object.
    Json(Vec<usize>),
}

/// How a row becomes a message, for one table.
#[derive(Debug, Clone)]
pub struct MessageLayout {
    value_columns: Vec<usize>,
    key: KeySource,
    timestamp: Option<usize>,
}

impl MessageLayout {
    /// The layout of a table with these metadata columns and key columns (by name).
    pub fn try_new(metadata: &MetadataColumns, key_fields: &[String]) -> Result<Self> {
        let schema = metadata.table_schema();
        let key = match (metadata.key_column(), key_fields) {
            (Some(_), [_, ..]) => {
                return plan_err!(
                    "a table with a METADATA FROM 'key' column takes its message keys from it: drop 'key.fields' or the primary key"
                );
            }
            (Some(column), []) => KeySource::Raw(column),
            (None, []) => KeySource::None,
            (None, fields) => {
                let columns = fields
                    .iter()
                    .map(|f| match schema.index_of(f) {
                        Ok(i) => Ok(i),
                        Err(_) => plan_err!("key field {f} is not a column of the table"),
                    })
                    .collect::<Result<Vec<usize>>>()?;
                match columns.as_slice() {
                    [one] if schema.field(*one).data_type() == &DataType::Utf8 => {
                        KeySource::Raw(*one)
                    }
                    _ => KeySource::Json(columns),
                }
            }
        };
        Ok(Self {
            value_columns: metadata.value_columns(),
            key,
            timestamp: metadata.timestamp_column(),
        })
    }

    /// The messages of `batch`.
    pub fn encode(&self, batch: &RecordBatch) -> Result<EncodedMessages> {
        let mut values = Vec::new();
        encode_json_lines(&batch.project(&self.value_columns)?, &mut values)?;
        let value_ranges = line_ranges(&values);
        let mut keys = Vec::new();
        let key_ranges = match &self.key {
            KeySource::None => vec![None; batch.num_rows()],
            KeySource::Raw(column) => raw_keys(batch.column(*column).as_ref(), &mut keys)?,
            KeySource::Json(columns) => {
                encode_json_lines(&batch.project(columns)?, &mut keys)?;
                line_ranges(&keys).into_iter().map(Some).collect()
            }
        };
        let timestamps = match self.timestamp {
            None => vec![None; batch.num_rows()],
            Some(column) => {
                let millis = cast(
                    batch.column(column),
                    &DataType::Timestamp(TimeUnit::Millisecond, None),
                )?;
                millis
                    .as_primitive::<TimestampMillisecondType>()
                    .iter()
                    .collect()
            }
        };
        Ok(EncodedMessages {
            values,
            value_ranges,
            keys,
            key_ranges,
            timestamps,
        })
    }
}

/// One batch's messages, encoded into two shared buffers.
pub struct EncodedMessages {
    values: Vec<u8>,
    value_ranges: Vec<Range<usize>>,
    keys: Vec<u8>,
    key_ranges: Vec<Option<Range<usize>>>,
    timestamps: Vec<Option<i64>>,
}

/// One message to write.
pub struct OutgoingMessage<'a> {
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    /// Milliseconds since the epoch; the producer's clock when `None`.
    pub timestamp: Option<i64>,
}

impl EncodedMessages {
    /// The number of messages.
    pub fn len(&self) -> usize {
        self.value_ranges.len()
    }

    /// The `i`-th message.
    pub fn message(&self, i: usize) -> OutgoingMessage<'_> {
        OutgoingMessage {
            key: self.key_ranges[i].clone().map(|r| &self.keys[r]),
            value: &self.values[self.value_ranges[i].clone()],
            timestamp: self.timestamps[i],
        }
    }
}

/// The ranges of the lines in `buffer`, without their `\n`.
fn line_ranges(buffer: &[u8]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for (i, &byte) in buffer.iter().enumerate() {
        if byte == b'\n' {
            ranges.push(start..i);
            start = i + 1;
        }
    }
    ranges
}

/// Copies each row's text or bytes into `out`; `None` for nulls.
fn raw_keys(column: &dyn Array, out: &mut Vec<u8>) -> Result<Vec<Option<Range<usize>>>> {
    let mut push = |bytes: Option<&[u8]>| {
        bytes.map(|b| {
            out.extend_from_slice(b);
            out.len() - b.len()..out.len()
        })
    };
    Ok(match column.data_type() {
        DataType::Utf8 => column
            .as_string::<i32>()
            .iter()
            .map(|v| push(v.map(str::as_bytes)))
            .collect(),
        DataType::Binary => column.as_binary::<i32>().iter().map(push).collect(),
        other => return plan_err!("a message key column cannot be {other}"),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("u1"), None])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap()
    }

    fn text(bytes: Option<&[u8]>) -> Option<&str> {
        bytes.map(|b| std::str::from_utf8(b).unwrap())
    }

    #[test]
    fn a_text_key_column_is_written_as_its_text_and_values_as_json() {
        let batch = batch();
        let metadata = MetadataColumns::try_new(&batch.schema(), &[]).unwrap();
        let layout = MessageLayout::try_new(&metadata, &["user_id".into()]).unwrap();
        let messages = layout.encode(&batch).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(text(messages.message(0).key), Some("u1"));
        assert_eq!(text(messages.message(1).key), None);
        assert_eq!(
            text(Some(messages.message(0).value)),
            Some(r#"{"user_id":"u1","n":1}"#)
        );
        assert_eq!(text(Some(messages.message(1).value)), Some(r#"{"n":2}"#));
    }

    #[test]
    fn several_key_columns_are_written_as_a_json_object() {
        let batch = batch();
        let metadata = MetadataColumns::try_new(&batch.schema(), &[]).unwrap();
        let layout = MessageLayout::try_new(&metadata, &["user_id".into(), "n".into()]).unwrap();
        let messages = layout.encode(&batch).unwrap();
        assert_eq!(
            text(messages.message(0).key),
            Some(r#"{"user_id":"u1","n":1}"#)
        );
        let unknown = MessageLayout::try_new(&metadata, &["nope".into()]).unwrap_err();
        assert!(unknown.to_string().contains("key field nope"), "{unknown}");
    }
}
