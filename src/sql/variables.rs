//! `${NAME}` and `${NAME:-default}` in a pipeline file, replaced before it is parsed: the
//! same pipeline runs against a laptop's broker or a production cluster by setting
//! environment variables (`KAFKA_BOOTSTRAP=broker:9092 profusion run pipeline.sql`).
//! `$$` writes a literal `$`; a variable that is unset and has no default is an error that
//! names it and its line.

use crate::error::{Error, Result};

/// `text` with every variable replaced by `lookup(name)`, or its default.
pub fn substitute_variables(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let line = text[..text.len() - rest.len() + at].matches('\n').count() + 1;
        let Some(end) = body.find('}') else {
            return Err(Error::Syntax {
                line,
                message: "'${' without a closing '}'".into(),
            });
        };
        let (name, default) = match body[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&body[..end], None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Syntax {
                line,
                message: format!("'${{{}}}' is not a variable name", &body[..end]),
            });
        }
        match lookup(name).or_else(|| default.map(str::to_string)) {
            Some(value) => out.push_str(&value),
            None => {
                return Err(Error::Syntax {
                    line,
                    message: format!(
                        "variable {name} is not set (set it in the environment, or write ${{{name}:-default}})"
                    ),
                });
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `.sql` file at `path`, its `${VARIABLES}` replaced from the environment.
pub fn read_sql_file(path: &std::path::Path) -> crate::error::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::error::Error::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    substitute_variables(&text, |name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KAFKA_BOOTSTRAP").then(|| "broker:9092".to_string())
    }

    #[test]
    fn variables_are_replaced_by_their_value_or_default() {
        let text = "'bootstrap.servers' = '${KAFKA_BOOTSTRAP}', topic = '${TOPIC:-events}', price = '$$5', x = $y";
        assert_eq!(
            substitute_variables(text, env).unwrap(),
            "'bootstrap.servers' = 'broker:9092', topic = 'events', price = '$5', x = $y"
        );
    }

    #[test]
    fn an_unset_variable_without_default_names_itself_and_its_line() {
        let error = substitute_variables("SELECT 1;\nSELECT '${MISSING}';", env)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("line 2: variable MISSING is not set"),
            "{error}"
        );
        assert!(substitute_variables("${unclosed", env).is_err());
        assert!(substitute_variables("${not a name}", env).is_err());
    }
}
