//! Encodings of rows: JSON lines (timestamps as ISO-8601), aligned text tables, and the
//! `format` option shared by connectors.

mod json_lines;
mod text_table;

pub use json_lines::encode_json_lines;
pub use text_table::TextTable;
