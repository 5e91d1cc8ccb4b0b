//! `format = 'debezium-json'`: change events as Debezium writes them, `{"before": {..},
//! "after": {..}, "op": "c" | "u" | "d" | "r", ...}`, optionally inside `{"schema": ..,
//! "payload": {..}}`. Each event becomes one row: the row after the change (created,
//! updated, or read in a snapshot), or the row before it for a delete. The change kind is
//! readable as `METADATA FROM 'op'`, and a Kafka sink with a key writes deletes as
//! tombstones.

use serde_json::Value;

use super::avro::Refusal;
use super::bad_data::BadRecordKind;

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
    /// A row read by a snapshot of the table.
    Read,
}

impl ChangeOp {
    /// Debezium's letter for the change.
    pub fn letter(self) -> &'static str {
        match self {
            Self::Create => "c",
            Self::Update => "u",
            Self::Delete => "d",
            Self::Read => "r",
        }
    }

    fn from_letter(letter: &str) -> Option<Self> {
        Some(match letter {
            "c" => Self::Create,
            "u" => Self::Update,
            "d" => Self::Delete,
            "r" => Self::Read,
            _ => return None,
        })
    }
}

fn invalid(reason: impl Into<String>) -> Refusal {
    (BadRecordKind::InvalidChange, reason.into())
}

/// The change in a Debezium event, and the row it carries as a JSON object.
pub fn unwrap_change(value: &[u8]) -> Result<(ChangeOp, Vec<u8>), Refusal> {
    let mut event: Value =
        serde_json::from_slice(value).map_err(|e| (BadRecordKind::InvalidJson, e.to_string()))?;
    if let Some(payload) = event.get_mut("payload")
        && payload.get("op").is_some()
    {
        event = payload.take();
    }
    let letter = event
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a change event needs a string \"op\""))?;
    let op = ChangeOp::from_letter(letter).ok_or_else(|| {
        invalid(format!(
            "op \"{letter}\" is not a row change (c, u, d or r)"
        ))
    })?;
    let image = if op == ChangeOp::Delete {
        "before"
    } else {
        "after"
    };
    match event.get(image) {
        Some(row @ Value::Object(_)) => Ok((op, row.to_string().into_bytes())),
        _ => Err(invalid(format!(
            "op \"{letter}\" needs an object in \"{image}\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: &str) -> Result<(ChangeOp, String), Refusal> {
        unwrap_change(value.as_bytes()).map(|(op, row)| (op, String::from_utf8(row).unwrap()))
    }

    #[test]
    fn changes_carry_the_row_after_or_for_deletes_before() {
        assert_eq!(
            row(r#"{"before": null, "after": {"id": 1}, "op": "c"}"#).unwrap(),
            (ChangeOp::Create, r#"{"id":1}"#.into())
        );
        assert_eq!(
            row(r#"{"before": {"id": 1}, "after": null, "op": "d"}"#).unwrap(),
            (ChangeOp::Delete, r#"{"id":1}"#.into())
        );
        assert_eq!(
            row(r#"{"schema": {}, "payload": {"after": {"id": 2}, "op": "r"}}"#).unwrap(),
            (ChangeOp::Read, r#"{"id":2}"#.into())
        );
    }

    #[test]
    fn events_that_are_not_row_changes_are_refused() {
        for (event, kind) in [
            ("{oops", BadRecordKind::InvalidJson),
            (r#"{"after": {"id": 1}}"#, BadRecordKind::InvalidChange),
            (r#"{"op": "t"}"#, BadRecordKind::InvalidChange),
            (
                r#"{"op": "d", "before": null}"#,
                BadRecordKind::InvalidChange,
            ),
        ] {
            assert_eq!(row(event).unwrap_err().0, kind, "{event}");
        }
    }
}
