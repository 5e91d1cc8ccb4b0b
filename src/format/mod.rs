//! Encodings of rows for sinks: JSON lines (timestamps as ISO-8601) and aligned text
//! tables printed a batch at a time.

mod json_lines;
mod text_table;

pub use json_lines::encode_json_lines;
pub use text_table::TextTable;
