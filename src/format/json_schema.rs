//! Validating JSON messages against a JSON Schema file (`'json.schema'`), compiled once
//! per table. A message that is not JSON, or that the schema rejects, is a bad record.

use std::sync::Arc;

use serde_json::Value;

use crate::error::Error;

/// Why a value failed validation.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonSchemaFailure {
    /// The value is not JSON at all.
    NotJson(String),
    /// The schema rejects the value: where and why.
    Violation(String),
}

/// A compiled JSON Schema.
#[derive(Debug, Clone)]
pub struct JsonSchema {
    path: String,
    validator: Arc<jsonschema::Validator>,
}

impl JsonSchema {
    /// Reads and compiles the schema in the file at `path`.
    pub fn load(path: &str) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("reading the JSON Schema {path}"),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Compiles the schema `text` (read from `path`).
    pub fn parse(path: &str, text: &str) -> Result<Self, Error> {
        let invalid = |message: String| Error::Io {
            context: format!("the JSON Schema {path}"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, message),
        };
        let schema: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let validator = jsonschema::validator_for(&schema).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            path: path.to_string(),
            validator: Arc::new(validator),
        })
    }

    /// The file the schema came from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Checks one JSON value.
    pub fn check(&self, value: &[u8]) -> Result<(), JsonSchemaFailure> {
        let instance: Value =
            serde_json::from_slice(value).map_err(|e| JsonSchemaFailure::NotJson(e.to_string()))?;
        self.validator.validate(&instance).map_err(|error| {
            let at = error.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            JsonSchemaFailure::Violation(format!("at {at}: {error}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_the_schema_rejects_say_where_and_why() {
        let schema = JsonSchema::parse(
            "events.schema.json",
            r#"{"type": "object", "required": ["user_id"],
                "properties": {"amount": {"type": "number", "minimum": 0}}}"#,
        )
        .unwrap();
        assert_eq!(schema.check(br#"{"user_id": "u1", "amount": 3}"#), Ok(()));
        let JsonSchemaFailure::Violation(why) = schema
            .check(br#"{"user_id": "u1", "amount": -3}"#)
            .unwrap_err()
        else {
            panic!("a violation")
        };
        assert!(why.starts_with("at /amount:"), "{why}");
        assert!(matches!(
            schema.check(br#"{"amount": 1}"#),
            Err(JsonSchemaFailure::Violation(_))
        ));
        assert!(matches!(
            schema.check(b"{oops"),
            Err(JsonSchemaFailure::NotJson(_))
        ));
        assert!(JsonSchema::parse("bad.json", r#"{"type": 12}"#).is_err());
    }
}
