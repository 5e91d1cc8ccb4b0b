//! Webhook bodies into rows: one JSON object, or an array of them, read into the table's
//! schema. A field the table does not have, a value of the wrong type or a missing
//! required column is an error that says so; nothing of a bad body is written.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use serde_json::Value;

use crate::format::{JsonDecoder, JsonOptions};

/// The events of `body` as one batch of `schema`.
pub fn decode_events(schema: &SchemaRef, body: &[u8]) -> Result<RecordBatch, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let events = match value {
        Value::Array(events) => events,
        object @ Value::Object(_) => vec![object],
        _ => return Err("the body must be a JSON object or an array of objects".into()),
    };
    if events.is_empty() {
        return Err("the body holds no events".into());
    }
    let mut lines = Vec::with_capacity(body.len() + events.len());
    for (index, event) in events.iter().enumerate() {
        if !event.is_object() {
            return Err(format!("event {index} is not a JSON object"));
        }
        serde_json::to_writer(&mut lines, event).map_err(|e| e.to_string())?;
        lines.push(b'\n');
    }
    let options = JsonOptions {
        strict: true,
        ..JsonOptions::new(events.len())
    };
    let mut decoder =
        JsonDecoder::try_new(Arc::clone(schema), options).map_err(|e| e.to_string())?;
    decoder
        .decode(&lines)
        .map_err(|e| format!("the events do not fit the table's columns: {e}"))?;
    let batch = decoder
        .flush()
        .map_err(|e| format!("the events do not fit the table's columns: {e}"))?
        .ok_or("the body holds no events")?;
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("amount", DataType::Float64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]))
    }

    #[test]
    fn an_object_or_an_array_of_objects() {
        let one = decode_events(
            &schema(),
            br#"{"user_id":"u1","ts":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(one.num_rows(), 1);
        let two = decode_events(
            &schema(),
            br#"[{"user_id":"u1","amount":2.5,"ts":"2026-01-01T00:00:00Z"},{"user_id":"u2","ts":1767225600000}]"#,
        )
        .unwrap();
        assert_eq!(two.num_rows(), 2);
    }

    #[test]
    fn bad_bodies_say_why() {
        let s = schema();
        assert!(
            decode_events(&s, b"{nope")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(decode_events(&s, b"42").unwrap_err().contains("object"));
        assert!(decode_events(&s, b"[]").unwrap_err().contains("no events"));
        assert!(decode_events(&s, b"[1]").unwrap_err().contains("event 0"));
        let unknown = decode_events(&s, br#"{"user_id":"u1","ts":1,"colour":"red"}"#).unwrap_err();
        assert!(unknown.contains("colour"), "{unknown}");
        let missing = decode_events(&s, br#"{"amount":1.0,"ts":1}"#).unwrap_err();
        assert!(
            missing.contains("user_id") || missing.contains("null"),
            "{missing}"
        );
        let wrong = decode_events(&s, br#"{"user_id":"u1","ts":1,"amount":"lots"}"#).unwrap_err();
        assert!(
            wrong.contains("amount") || wrong.contains("lots"),
            "{wrong}"
        );
    }
}
