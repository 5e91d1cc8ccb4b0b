//! Rows as JSON objects for HTTP answers: every column present (`null` when null),
//! timestamps as ISO-8601, nested values as JSON.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use datafusion::common::Result;

/// Row `row` of `batch` as one JSON object.
pub fn row_json(batch: &RecordBatch, row: usize) -> Result<String> {
    let mut out = Vec::with_capacity(128);
    {
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, LineDelimited>(&mut out);
        writer.write(&batch.slice(row, 1))?;
        writer.finish()?;
    }
    while out.last() == Some(&b'\n') {
        out.pop();
    }
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    // Keys, view names and times rarely need escaping: quote those directly.
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        return format!("\"{text}\"");
    }
    serde_json::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn nulls_are_explicit() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("plan", DataType::Utf8, true),
            Field::new("events", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["u1", "u2"])),
                Arc::new(StringArray::from(vec![None, Some("pro")])),
                Arc::new(Int64Array::from(vec![3, 4])),
            ],
        )
        .unwrap();
        assert_eq!(
            row_json(&batch, 0).unwrap(),
            r#"{"user_id":"u1","plan":null,"events":3}"#
        );
        assert_eq!(
            row_json(&batch, 1).unwrap(),
            r#"{"user_id":"u2","plan":"pro","events":4}"#
        );
        assert_eq!(json_string("a\"b"), r#""a\"b""#);
        assert_eq!(json_string("u1"), r#""u1""#);
        assert_eq!(json_string("a\\b\n"), r#""a\\b\n""#);
    }
}
