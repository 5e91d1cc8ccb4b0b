//! Where in a statement an error is: DataFusion's diagnostics carry a span, the SQL
//! parser's messages end with `at Line: L, Column: C`. Shown as the statement's line with
//! a caret under the spot, the way psql does.

use datafusion::common::DataFusionError;

use crate::error::Error;

/// The 1-based line and column an error points at in the statement it came from.
pub fn error_location(error: &Error) -> Option<(usize, usize)> {
    let inner = match error {
        Error::Statement { source, .. } | Error::DataFusion(source) => source,
        _ => return None,
    };
    if let Some(span) = inner.diagnostic().and_then(|d| d.span) {
        return Some((span.start.line as usize, span.start.column as usize));
    }
    parser_location(&deepest_message(inner))
}

/// The message of the innermost error, where the parser puts its position.
fn deepest_message(error: &DataFusionError) -> String {
    match error {
        DataFusionError::Context(_, inner) => deepest_message(inner),
        DataFusionError::Diagnostic(_, inner) => deepest_message(inner),
        other => other.to_string(),
    }
}

/// `... at Line: 1, Column: 8` → (1, 8).
fn parser_location(message: &str) -> Option<(usize, usize)> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

/// The line of `statement` at `line` with a caret under `column`.
pub fn caret(statement: &str, line: usize, column: usize) -> Option<String> {
    let text = statement.lines().nth(line.checked_sub(1)?)?;
    let indent: String = text
        .chars()
        .take(column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    Some(format!("{text}\n{indent}^"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_positions_are_read_from_the_message() {
        assert_eq!(
            parser_location(
                "SQL error: ParserError(\"Expected: end of statement, found: x at Line: 2, Column: 14\")"
            ),
            Some((2, 14))
        );
        assert_eq!(parser_location("no position here"), None);
    }

    #[test]
    fn the_caret_sits_under_the_column() {
        assert_eq!(
            caret("SELECT a\nFROM nowhere", 2, 6).unwrap(),
            "FROM nowhere\n     ^"
        );
        assert_eq!(caret("SELECT 1", 3, 1), None);
    }
}
