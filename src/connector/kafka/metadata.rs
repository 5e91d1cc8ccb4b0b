//! Columns a Kafka table fills from each message's metadata rather than its value:
//! `key TEXT METADATA FROM 'key'`, `'partition'`, `'offset'`, `'timestamp'` (the Kafka
//! timestamp), `'headers'` (every header, as a JSON object of strings) and `'header.<name>'`
//! (one header's value). The value is decoded into the other columns; these are added
//! alongside.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use datafusion::common::Result;

use super::debezium::ChangeOp;
use super::decode::RawRecord;
use super::fetch_queue::MessageHeaders;
use crate::sql::MetadataColumn;

/// What a metadata column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Key,
    Partition,
    Offset,
    Timestamp,
    /// Every header as a JSON object.
    Headers,
    /// The value of the named header (the last, if it repeats).
    Header(String),
    /// The change a row is (`debezium-json`: c, u, d or r); on a sink, `d` writes a
    /// tombstone.
    Op,
}

/// Where the value's columns and the metadata columns sit in a table's schema.
#[derive(Debug, Clone)]
pub struct MetadataColumns {
    table: SchemaRef,
    /// The table's columns without the metadata ones: what a message value holds.
    value: SchemaRef,
    /// Per table column: the metadata it holds, or `None` for a value column.
    fields: Vec<Option<Field>>,
}

impl MetadataColumns {
    /// Checks the declared metadata columns against the table's schema.
    pub fn try_new(table: &SchemaRef, declared: &[MetadataColumn]) -> Result<Self, String> {
        let mut fields = vec![None; table.fields().len()];
        for column in declared {
            let index = table
                .index_of(&column.column)
                .map_err(|_| format!("no column {} for METADATA FROM", column.column))?;
            let data_type = table.field(index).data_type();
            let text_or_bytes = matches!(data_type, DataType::Utf8 | DataType::Binary);
            let (field, fits) = match column.key.as_str() {
                "headers" => (Field::Headers, data_type == &DataType::Utf8),
                "op" => (Field::Op, data_type == &DataType::Utf8),
                name if name.starts_with("header.") && name.len() > "header.".len() => (
                    Field::Header(name["header.".len()..].to_string()),
                    text_or_bytes,
                ),
                "key" => (Field::Key, text_or_bytes),
                "partition" => (
                    Field::Partition,
                    matches!(data_type, DataType::Int32 | DataType::Int64),
                ),
                "offset" => (Field::Offset, data_type == &DataType::Int64),
                "timestamp" => (
                    Field::Timestamp,
                    matches!(data_type, DataType::Timestamp(..)),
                ),
                other => {
                    return Err(format!(
                        "column {}: unknown metadata '{other}' (known: key, partition, offset, timestamp, headers, header.<name>, op)",
                        column.column
                    ));
                }
            };
            if !fits {
                return Err(format!(
                    "column {}: metadata '{}' cannot be {data_type} (key and header.<name>: TEXT or BYTEA; partition: INT or BIGINT; offset: BIGINT; timestamp: TIMESTAMP; headers and op: TEXT)",
                    column.column, column.key
                ));
            }
            fields[index] = Some(field);
        }
        let value = Schema::new(
            table
                .fields()
                .iter()
                .zip(&fields)
                .filter(|(_, f)| f.is_none())
                .map(|(field, _)| Arc::clone(field))
                .collect::<Vec<_>>(),
        );
        Ok(Self {
            table: Arc::clone(table),
            value: Arc::new(value),
            fields,
        })
    }

    /// The table's schema.
    pub fn table_schema(&self) -> SchemaRef {
        Arc::clone(&self.table)
    }

    /// The schema of what a message value holds.
    pub fn value_schema(&self) -> SchemaRef {
        Arc::clone(&self.value)
    }

    /// The column holding each message's key, if the table declares one.
    pub fn key_column(&self) -> Option<usize> {
        self.position(Field::Key)
    }

    /// The column holding each message's Kafka timestamp, if the table declares one.
    pub fn timestamp_column(&self) -> Option<usize> {
        self.position(Field::Timestamp)
    }

    /// The column holding each row's change kind, if the table declares one.
    pub fn op_column(&self) -> Option<usize> {
        self.position(Field::Op)
    }

    /// The positions of the columns a message value holds.
    pub fn value_columns(&self) -> Vec<usize> {
        (0..self.fields.len())
            .filter(|&i| self.fields[i].is_none())
            .collect()
    }

    fn position(&self, field: Field) -> Option<usize> {
        self.fields.iter().position(|f| f.as_ref() == Some(&field))
    }

    /// The table's rows: the decoded `values` of `records[kept]`, with their metadata.
    pub fn assemble(
        &self,
        values: RecordBatch,
        records: &[RawRecord<'_>],
        kept: &[usize],
        partition: i32,
        ops: &[ChangeOp],
    ) -> Result<RecordBatch> {
        if self.fields.iter().all(Option::is_none) {
            return Ok(values.with_schema(Arc::clone(&self.table))?);
        }
        let records_kept = kept.len();
        let kept = || kept.iter().map(|&i| &records[i]);
        let mut value_columns = values.columns().iter();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.fields.len());
        for (field, table_field) in self.fields.iter().zip(self.table.fields()) {
            let column: ArrayRef = match field {
                None => match value_columns.next() {
                    Some(column) => Arc::clone(column),
                    None => {
                        return datafusion::common::internal_err!("missing value column");
                    }
                },
                Some(Field::Key) => match table_field.data_type() {
                    DataType::Binary => Arc::new(kept().map(|r| r.key).collect::<BinaryArray>()),
                    _ => Arc::new(
                        kept()
                            .map(|r| r.key.map(String::from_utf8_lossy))
                            .collect::<StringArray>(),
                    ),
                },
                Some(Field::Partition) => match table_field.data_type() {
                    DataType::Int32 => Arc::new(Int32Array::from(vec![partition; records_kept])),
                    _ => Arc::new(Int64Array::from(vec![partition as i64; records_kept])),
                },
                Some(Field::Offset) => Arc::new(kept().map(|r| r.offset).collect::<Int64Array>()),
                Some(Field::Timestamp) => {
                    let millis: Int64Array = kept().map(|r| r.timestamp_millis).collect();
                    let as_millis = datafusion::arrow::compute::cast(
                        &millis,
                        &DataType::Timestamp(TimeUnit::Millisecond, None),
                    )?;
                    datafusion::arrow::compute::cast(&as_millis, table_field.data_type())?
                }
                // Messages that are not change events are all inserts.
                Some(Field::Op) if ops.is_empty() => Arc::new(StringArray::from(vec![
                        ChangeOp::Create.letter();
                        records_kept
                    ])),
                Some(Field::Op) => Arc::new(
                    ops.iter()
                        .map(|op| Some(op.letter()))
                        .collect::<StringArray>(),
                ),
                Some(Field::Headers) => Arc::new(
                    kept()
                        .map(|r| r.headers.map(headers_as_json))
                        .collect::<StringArray>(),
                ),
                Some(Field::Header(name)) => {
                    let values = kept().map(|r| r.headers.and_then(|h| header_value(h, name)));
                    match table_field.data_type() {
                        DataType::Binary => Arc::new(values.collect::<BinaryArray>()),
                        _ => Arc::new(
                            values
                                .map(|v| v.map(String::from_utf8_lossy))
                                .collect::<StringArray>(),
                        ),
                    }
                }
            };
            columns.push(column);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.table), columns)?)
    }
}

/// The last value of header `name`, if the message has it with a value.
fn header_value<'a>(headers: MessageHeaders<'a>, name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name == name)
        .last()
        .and_then(|h| h.value)
}

/// Every header as a JSON object of strings (values read as UTF-8; a header without a
/// value is null; a repeated header keeps its last value).
fn headers_as_json(headers: MessageHeaders<'_>) -> String {
    let object: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|h| {
            let value = h.value.map_or(serde_json::Value::Null, |v| {
                serde_json::Value::String(String::from_utf8_lossy(v).into_owned())
            });
            (h.name.into_owned(), value)
        })
        .collect();
    serde_json::Value::Object(object).to_string()
}
