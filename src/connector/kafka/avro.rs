//! Avro message values in the Confluent wire format: a magic byte 0, the writer schema's
//! registry id (4 bytes, big-endian), then the Avro body. Writer schemas are fetched from
//! the registry once per id; values are decoded with arrow-avro, run by run of one schema
//! id, and shaped into the table's columns by name (missing nullable columns are null).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options, concat_batches};
use datafusion::arrow::datatypes::SchemaRef;
use tokio::runtime::Handle;

use super::bad_data::BadRecordKind;
use crate::error::Error;
use crate::format::SchemaRegistry;

/// The wire format's first byte.
pub const MAGIC_BYTE: u8 = 0;
/// The magic byte and the schema id.
pub const HEADER_BYTES: usize = 5;

/// A value refused, with its kind and the reason.
pub type Refusal = (BadRecordKind, String);

/// Decodes one partition's Avro values into the table's value columns.
pub struct AvroValues {
    registry: Arc<SchemaRegistry>,
    runtime: Handle,
    table: SchemaRef,
    batch_size: usize,
    /// Whether the registry knows each id seen.
    known: HashMap<u32, bool>,
    /// A decoder per writer schema id in use.
    decoders: HashMap<u32, Decoder>,
}

impl AvroValues {
    /// A decoder of values into `table`'s columns; `runtime` runs registry requests from
    /// the reader's blocking thread.
    pub fn new(
        registry: Arc<SchemaRegistry>,
        runtime: Handle,
        table: SchemaRef,
        batch_size: usize,
    ) -> Self {
        Self {
            registry,
            runtime,
            table,
            batch_size,
            known: HashMap::new(),
            decoders: HashMap::new(),
        }
    }

    /// Checks the framing and the schema id of `value`: `Ok(Err(..))` refuses the value; an
    /// `Err` is the registry failing, which stops the pipeline rather than refusing data.
    pub fn check(&mut self, value: &[u8]) -> Result<Result<(), Refusal>, Error> {
        if value.len() < HEADER_BYTES {
            return Ok(Err((
                BadRecordKind::ShortAvroHeader,
                format!(
                    "{} bytes, shorter than the 5-byte Avro wire-format header",
                    value.len()
                ),
            )));
        }
        if value[0] != MAGIC_BYTE {
            return Ok(Err((
                BadRecordKind::WrongMagicByte,
                format!("magic byte {} (the wire format's is 0)", value[0]),
            )));
        }
        let id = schema_id(value);
        let known = match self.known.get(&id) {
            Some(&known) => known,
            None => {
                let known = self
                    .runtime
                    .block_on(self.registry.schema_by_id(id))?
                    .is_some();
                self.known.insert(id, known);
                known
            }
        };
        Ok(if known {
            Ok(())
        } else {
            Err((
                BadRecordKind::UnknownSchemaId,
                format!("the schema registry has no schema id {id}"),
            ))
        })
    }

    /// Decodes `values`, each already checked, into one batch of the table's columns.
    pub fn decode(&mut self, values: &[&[u8]]) -> Result<RecordBatch, Refusal> {
        let mut batches = Vec::new();
        let mut start = 0;
        while start < values.len() {
            let id = schema_id(values[start]);
            let end = values[start..]
                .iter()
                .position(|v| schema_id(v) != id)
                .map_or(values.len(), |n| start + n);
            let decoded = self.decode_run(id, &values[start..end]);
            if decoded.is_err() {
                // A failed decoder may hold half a record: start the next one afresh.
                self.decoders.remove(&id);
            }
            batches.push(decoded?);
            start = end;
        }
        concat_batches(&self.table, &batches).map_err(invalid)
    }

    fn decode_run(&mut self, id: u32, values: &[&[u8]]) -> Result<RecordBatch, Refusal> {
        if !self.decoders.contains_key(&id) {
            // Checked values have known ids, whose schemas the registry client holds.
            let schema = self
                .runtime
                .block_on(self.registry.schema_by_id(id))
                .map_err(invalid)?
                .ok_or_else(|| invalid(format!("schema id {id} is unknown")))?;
            let decoder = self.decoder_for(id, &schema).map_err(invalid)?;
            self.decoders.insert(id, decoder);
        }
        let Some(decoder) = self.decoders.get_mut(&id) else {
            return Err(invalid(format!("no decoder for schema id {id}")));
        };
        for value in values {
            let used = decoder.decode(value).map_err(invalid)?;
            if used != value.len() {
                return Err(invalid(format!(
                    "the value has {} bytes, its record ends after {used}",
                    value.len()
                )));
            }
        }
        let batch = decoder
            .flush()
            .map_err(invalid)?
            .ok_or_else(|| invalid("no rows decoded"))?;
        conform(&batch, &self.table)
    }

    fn decoder_for(&self, id: u32, schema: &str) -> Result<Decoder, String> {
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        store
            .set(Fingerprint::Id(id), AvroSchema::new(schema.to_string()))
            .map_err(|e| e.to_string())?;
        ReaderBuilder::new()
            .with_writer_schema_store(store)
            .with_active_fingerprint(Fingerprint::Id(id))
            .with_batch_size(self.batch_size.max(1))
            .build_decoder()
            .map_err(|e| format!("schema id {id}: {e}"))
    }
}

/// The schema id of a value with a complete header.
fn schema_id(value: &[u8]) -> u32 {
    u32::from_be_bytes([value[1], value[2], value[3], value[4]])
}

fn invalid(error: impl ToString) -> Refusal {
    (BadRecordKind::InvalidAvro, error.to_string())
}

/// `batch` (as the writer schema shaped it) in the table's columns, matched by name.
fn conform(batch: &RecordBatch, table: &SchemaRef) -> Result<RecordBatch, Refusal> {
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let columns = table
        .fields()
        .iter()
        .map(|field| {
            let column: ArrayRef = match batch.column_by_name(field.name()) {
                Some(column) => {
                    cast_with_options(column, field.data_type(), &options).map_err(|e| {
                        (
                            BadRecordKind::WrongType,
                            format!("field {}: {e}", field.name()),
                        )
                    })?
                }
                None => new_null_array(field.data_type(), batch.num_rows()),
            };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err((
                    BadRecordKind::MissingValue,
                    format!("no value for the NOT NULL column {}", field.name()),
                ));
            }
            Ok(column)
        })
        .collect::<Result<Vec<_>, Refusal>>()?;
    RecordBatch::try_new(Arc::clone(table), columns).map_err(invalid)
}
