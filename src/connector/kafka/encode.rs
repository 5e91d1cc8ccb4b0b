//! Turning a sink's rows into Kafka messages: the value is the table's value columns as one
//! JSON object, or as an Avro record in the Confluent wire format; the key comes from a `METADATA FROM 'key'` column, or else from the key
//! columns (`'key.fields'` or the primary key: a single TEXT column as its text, anything
//! else as a JSON object); the Kafka timestamp from a `METADATA FROM 'timestamp'` column.

use std::ops::Range;

use arrow_avro::schema::{AvroSchema, FingerprintStrategy, SCHEMA_METADATA_KEY};
use arrow_avro::writer::WriterBuilder;
use arrow_avro::writer::format::AvroSoeFormat;
use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use datafusion::common::{DataFusionError, Result, plan_err};

use super::debezium::ChangeOp;
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
    /// The change-kind column: rows whose kind is `d` are written as tombstones.
    op: Option<usize>,
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
            op: metadata.op_column(),
        })
    }

    /// Checks that rows can be written this way: deletes (a change-kind column) need a key.
    pub fn check_writable(&self) -> Result<()> {
        if self.op.is_some() && matches!(self.key, KeySource::None) {
            return plan_err!(
                "a table with a METADATA FROM 'op' column writes deletes as tombstones, which need a key: set 'key.fields' or a PRIMARY KEY"
            );
        }
        Ok(())
    }

    /// The schema of what a message value holds.
    pub fn value_schema(&self, table: &SchemaRef) -> Result<Schema> {
        Ok(table.project(&self.value_columns)?)
    }

    /// The messages of `batch`, values encoded by `values`.
    pub fn encode(
        &self,
        batch: &RecordBatch,
        values: &mut ValueEncoder,
    ) -> Result<EncodedMessages> {
        let (values, value_ranges) = values.encode(&batch.project(&self.value_columns)?)?;
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
        let deletes = match self.op {
            Some(column) => batch
                .column(column)
                .as_string::<i32>()
                .iter()
                .map(|op| op == Some(ChangeOp::Delete.letter()))
                .collect(),
            None => Vec::new(),
        };
        Ok(EncodedMessages {
            values,
            value_ranges,
            deletes,
            keys,
            key_ranges,
            timestamps,
        })
    }
}

/// How message values are written.
pub enum ValueEncoder {
    /// One JSON object per row.
    Json,
    /// Avro in the Confluent wire format, the schema registered under its id.
    Avro(Box<arrow_avro::writer::Encoder>),
}

impl ValueEncoder {
    /// An Avro encoder for rows of `schema` whose Avro form (`avro_json`) the registry
    /// holds as `id`.
    pub fn avro(schema: Schema, avro_json: String, id: u32) -> Result<Self> {
        let mut metadata = schema.metadata().clone();
        metadata.insert(SCHEMA_METADATA_KEY.to_string(), avro_json);
        let schema = schema.with_metadata(metadata);
        let encoder = WriterBuilder::new(schema)
            .with_fingerprint_strategy(FingerprintStrategy::Id(id))
            .build_encoder::<AvroSoeFormat>()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Self::Avro(Box::new(encoder)))
    }

    /// The encoded values of `batch` and each one's range.
    fn encode(&mut self, batch: &RecordBatch) -> Result<(Bytes, Vec<Range<usize>>)> {
        match self {
            Self::Json => {
                let mut values = Vec::new();
                encode_json_lines(batch, &mut values)?;
                let ranges = line_ranges(&values);
                Ok((Bytes::from(values), ranges))
            }
            Self::Avro(encoder) => {
                // The rows as the table declares them (the plan may differ in nullability).
                let batch = RecordBatch::try_new(encoder.schema(), batch.columns().to_vec())?;
                encoder
                    .encode(&batch)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                let rows = encoder.flush();
                let ranges = rows.offsets().windows(2).map(|w| w[0]..w[1]).collect();
                Ok((rows.bytes().clone(), ranges))
            }
        }
    }
}

/// The Avro form of rows of `schema`: the record schema a sink registers.
pub fn avro_schema_of(schema: &Schema) -> Result<String> {
    AvroSchema::try_from(schema)
        .map(|avro| avro.json_string)
        .map_err(DataFusionError::from)
}

/// One batch's messages, encoded into two shared buffers.
pub struct EncodedMessages {
    values: Bytes,
    value_ranges: Vec<Range<usize>>,
    /// Which rows are deletes (empty when none can be).
    deletes: Vec<bool>,
    keys: Vec<u8>,
    key_ranges: Vec<Option<Range<usize>>>,
    timestamps: Vec<Option<i64>>,
}

/// One message to write.
pub struct OutgoingMessage<'a> {
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
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
            value: (!self.deletes.get(i).copied().unwrap_or(false))
                .then(|| &self.values[self.value_ranges[i].clone()]),
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
        let messages = layout.encode(&batch, &mut ValueEncoder::Json).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(text(messages.message(0).key), Some("u1"));
        assert_eq!(text(messages.message(1).key), None);
        assert_eq!(
            text(messages.message(0).value),
            Some(r#"{"user_id":"u1","n":1}"#)
        );
        assert_eq!(text(messages.message(1).value), Some(r#"{"n":2}"#));
    }

    #[test]
    fn several_key_columns_are_written_as_a_json_object() {
        let batch = batch();
        let metadata = MetadataColumns::try_new(&batch.schema(), &[]).unwrap();
        let layout = MessageLayout::try_new(&metadata, &["user_id".into(), "n".into()]).unwrap();
        let messages = layout.encode(&batch, &mut ValueEncoder::Json).unwrap();
        assert_eq!(
            text(messages.message(0).key),
            Some(r#"{"user_id":"u1","n":1}"#)
        );
        let unknown = MessageLayout::try_new(&metadata, &["nope".into()]).unwrap_err();
        assert!(unknown.to_string().contains("key field nope"), "{unknown}");
    }
}
