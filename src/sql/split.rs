//! Splits a pipeline file into statements, keeping the line each one starts on so errors can
//! point at it.

use datafusion::sql::sqlparser::tokenizer::Token;

use super::tokens::tokenize;
use crate::error::Result;

/// One statement of a pipeline file, without its terminating `;`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceStatement {
    /// The statement text as written.
    pub text: String,
    /// The 1-based line of the file on which the statement starts.
    pub line: usize,
}

/// Splits `text` at top-level semicolons; comments and blank statements are skipped.
pub fn split_statements(text: &str) -> Result<Vec<SourceStatement>> {
    let tokens = tokenize(text, 1)?;
    let mut statements = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    let mut end = 0;
    for token in &tokens {
        if token.token == Token::SemiColon {
            if let Some((from, line)) = start.take() {
                statements.push(SourceStatement {
                    text: text[from..end].to_string(),
                    line,
                });
            }
        } else if !token.is_trivia() {
            start.get_or_insert((token.start, token.line));
            end = token.end;
        }
    }
    if let Some((from, line)) = start {
        statements.push(SourceStatement {
            text: text[from..end].to_string(),
            line,
        });
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons_with_lines() {
        let text = "-- a comment\nSELECT 1;\n\nSELECT ';'\n  FROM t;\n/* trailing */";
        let statements = split_statements(text).unwrap();
        assert_eq!(
            statements,
            vec![
                SourceStatement {
                    text: "SELECT 1".into(),
                    line: 2
                },
                SourceStatement {
                    text: "SELECT ';'\n  FROM t".into(),
                    line: 4
                },
            ]
        );
    }

    #[test]
    fn keeps_a_final_statement_without_semicolon() {
        let statements = split_statements("SELECT 1; SELECT 2").unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[1].text, "SELECT 2");
    }
}
