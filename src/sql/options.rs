//! `WITH (...)` options of a `CREATE TABLE`, consumed key by key by the connector that owns
//! them: whatever is left when the connector is done is reported as unknown.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use super::duration::parse_duration;
use crate::error::Error;

/// The `WITH` options of one statement, with where they came from for error messages.
#[derive(Debug, Clone)]
pub struct WithOptions {
    statement: String,
    line: usize,
    values: BTreeMap<String, String>,
}

impl WithOptions {
    /// Options of the statement described by `statement` (e.g. `CREATE TABLE events`) at `line`.
    pub fn new(statement: impl Into<String>, line: usize) -> Self {
        Self {
            statement: statement.into(),
            line,
            values: BTreeMap::new(),
        }
    }

    /// Adds an option; a repeated key is an error.
    pub fn insert(&mut self, key: String, value: String) -> Result<(), Error> {
        let key = key.to_ascii_lowercase();
        if self.values.contains_key(&key) {
            return Err(self.error(format!("option '{key}' is given twice")));
        }
        self.values.insert(key, value);
        Ok(())
    }

    /// An error about these options, naming the statement and its line.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::Option {
            statement: self.statement.clone(),
            line: self.line,
            message: message.into(),
        }
    }

    /// The options not consumed yet, as written (keys lowercased): taken before a connector
    /// consumes them, this is what the statement declared.
    pub fn remaining(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// Removes and returns the raw value of `key`.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.values.remove(key)
    }

    /// Removes every option whose key starts with `prefix`, keyed without the prefix.
    pub fn take_prefixed(&mut self, prefix: &str) -> BTreeMap<String, String> {
        let keys: Vec<String> = self
            .values
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let value = self.values.remove(&k)?;
                Some((k[prefix.len()..].to_string(), value))
            })
            .collect()
    }

    /// Removes and returns `key`, which must be present.
    pub fn required(&mut self, key: &str) -> Result<String, Error> {
        self.take(key)
            .ok_or_else(|| self.error(format!("missing required option '{key}'")))
    }

    /// Removes `key` and parses it with [`FromStr`].
    pub fn parse<T>(&mut self, key: &str) -> Result<Option<T>, Error>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.take(key)
            .map(|raw| {
                raw.trim()
                    .parse::<T>()
                    .map_err(|e| self.error(format!("option '{key}' has a bad value '{raw}': {e}")))
            })
            .transpose()
    }

    /// Removes `key` and parses it as a duration (`'5 seconds'`, `'500ms'`, `'1 minute'`).
    pub fn duration(&mut self, key: &str) -> Result<Option<Duration>, Error> {
        self.take(key)
            .map(|raw| {
                parse_duration(&raw)
                    .map_err(|e| self.error(format!("option '{key}' has a bad value '{raw}': {e}")))
            })
            .transpose()
    }

    /// Removes `key` and matches it against a fixed set of values, case-insensitively.
    pub fn choice<T: Copy>(
        &mut self,
        key: &str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, Error> {
        let Some(raw) = self.take(key) else {
            return Ok(None);
        };
        choices
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(raw.trim()))
            .map(|(_, value)| Some(*value))
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                self.error(format!(
                    "option '{key}' has a bad value '{raw}': expected one of {}",
                    names.join(", ")
                ))
            })
    }

    /// Fails if any option was not consumed, naming every unknown key.
    pub fn finish(self, connector: &str) -> Result<(), Error> {
        if self.values.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = self.values.keys().map(|k| format!("'{k}'")).collect();
        Err(self.error(format!(
            "unknown option{} {} for connector '{connector}'",
            if keys.len() == 1 { "" } else { "s" },
            keys.join(", ")
        )))
    }
}

/// Words in an option key that mark its value as a secret.
const SECRET_KEY_WORDS: [&str; 6] = [
    "password",
    "secret",
    "token",
    "credential",
    "jaas",
    "key.pem",
];

/// The value of option `key` fit to show: secrets as `********`, and the password of a URL
/// (`postgres://user:pw@host/db`) masked.
pub fn masked_option(key: &str, value: &str) -> String {
    let key = key.to_ascii_lowercase();
    if SECRET_KEY_WORDS.iter().any(|word| key.contains(word)) {
        return "********".into();
    }
    match url::Url::parse(value) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("********"));
            url.to_string()
        }
        // A key=value connection string (`host=db user=me password=pw`).
        _ if value.contains("password=") => value
            .split(' ')
            .map(|part| match part.starts_with("password=") {
                true => "password=********",
                false => part,
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> WithOptions {
        let mut options = WithOptions::new("CREATE TABLE t", 3);
        for (k, v) in pairs {
            options.insert(k.to_string(), v.to_string()).unwrap();
        }
        options
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(masked_option("webhook.secret", "s3cret"), "********");
        assert_eq!(masked_option("properties.sasl.password", "pw"), "********");
        assert_eq!(
            masked_option("url", "postgres://me:pw@127.0.0.1/db"),
            "postgres://me:********@127.0.0.1/db"
        );
        assert_eq!(
            masked_option("url", "host=127.0.0.1 user=me password=pw dbname=p"),
            "host=127.0.0.1 user=me password=******** dbname=p"
        );
        assert_eq!(masked_option("topic", "events"), "events");
    }

    #[test]
    fn leftover_keys_are_named() {
        let mut o = options(&[("count", "10"), ("colour", "red"), ("size", "1")]);
        assert_eq!(o.parse::<u64>("count").unwrap(), Some(10));
        let error = o.finish("datagen").unwrap_err().to_string();
        assert_eq!(
            error,
            "CREATE TABLE t (line 3): unknown options 'colour', 'size' for connector 'datagen'"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut o = options(&[("count", "ten")]);
        let error = o.parse::<u64>("count").unwrap_err().to_string();
        assert!(
            error.contains("option 'count' has a bad value 'ten'"),
            "{error}"
        );
    }

    #[test]
    fn choices_are_strict() {
        let mut o = options(&[("format", "yaml")]);
        let error = o
            .choice("format", &[("json", 1), ("csv", 2)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("expected one of json, csv"), "{error}");
    }
}
