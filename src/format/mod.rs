//! Encodings of rows: JSON lines (timestamps as ISO-8601, read back on a fast path),
//! aligned text tables printed a batch at a time, JSON Schema validation, and the Confluent
//! Schema Registry that Avro messages name their schemas in.

mod iso_timestamp;
mod json_decoder;
mod json_lines;
mod json_schema;
mod json_values;
mod schema_registry;
mod text_table;

pub use json_decoder::{JsonDecoder, JsonOptions};
pub use json_lines::encode_json_lines;
pub use json_schema::{JsonSchema, JsonSchemaFailure};
pub use json_values::{from_json_texts, json_texts};
pub use schema_registry::SchemaRegistry;
pub use text_table::TextTable;
