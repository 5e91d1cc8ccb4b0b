//! The line editor's helper: input is complete at a `;` outside quotes and comments (or at
//! once for a backslash command), and Tab completes keywords, table, column and function
//! names from what the session has declared.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

/// Names Tab completes, refreshed after each statement.
#[derive(Debug, Default)]
pub struct Completions {
    /// Table, view, column and function names, as declared.
    pub names: Vec<String>,
}

/// The REPL's rustyline helper.
#[derive(Debug, Clone)]
pub struct ReplHelper {
    completions: Arc<RwLock<Completions>>,
}

impl ReplHelper {
    pub fn new(completions: Arc<RwLock<Completions>>) -> Self {
        Self { completions }
    }
}

/// True when `input` holds a whole statement: a backslash command, or SQL ending with a
/// `;` that is not inside a string or comment.
pub fn is_complete(input: &str) -> bool {
    let trimmed = input.trim();
    if trimmed.is_empty() || trimmed.starts_with('\\') {
        return true;
    }
    match Tokenizer::new(&GenericDialect {}, input).tokenize() {
        Ok(tokens) => tokens
            .iter()
            .rev()
            .find(|t| !matches!(t, Token::Whitespace(_)))
            .is_some_and(|t| *t == Token::SemiColon),
        // An unterminated string or comment: more is coming.
        Err(_) => false,
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(match is_complete(ctx.input()) {
            true => ValidationResult::Valid(None),
            false => ValidationResult::Incomplete,
        })
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let word = &line[start..pos];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let names = match self.completions.read() {
            Ok(completions) => completions.names.clone(),
            Err(poisoned) => poisoned.into_inner().names.clone(),
        };
        Ok((start, candidates(word, &names)))
    }
}

/// What completes `word`: declared names as written, keywords in the case `word` is typed in.
pub fn candidates(word: &str, names: &[String]) -> Vec<Pair> {
    let lower = word.to_ascii_lowercase();
    let upper = word.chars().next().is_some_and(char::is_uppercase);
    let mut found: Vec<String> = names
        .iter()
        .filter(|n| n.to_ascii_lowercase().starts_with(&lower))
        .cloned()
        .collect();
    found.extend(
        ALL_KEYWORDS
            .iter()
            .filter(|k| k.to_ascii_lowercase().starts_with(&lower))
            .map(|k| match upper {
                true => k.to_string(),
                false => k.to_ascii_lowercase(),
            }),
    );
    found.sort();
    found.dedup();
    found
        .into_iter()
        .map(|f| Pair {
            display: f.clone(),
            replacement: f,
        })
        .collect()
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_complete_at_its_semicolon() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1;  "));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT 1 -- ;"));
        assert!(is_complete("\\d"));
        assert!(is_complete(""));
    }

    #[test]
    fn completion_offers_names_and_keywords() {
        let names = vec!["events".to_string(), "event_type".to_string()];
        let found: Vec<String> = candidates("ev", &names)
            .into_iter()
            .map(|p| p.replacement)
            .collect();
        assert!(found.contains(&"events".to_string()));
        assert!(found.contains(&"event_type".to_string()));
        let lower: Vec<String> = candidates("sel", &names)
            .into_iter()
            .map(|p| p.replacement)
            .collect();
        assert!(lower.contains(&"select".to_string()));
        let upper: Vec<String> = candidates("SEL", &names)
            .into_iter()
            .map(|p| p.replacement)
            .collect();
        assert!(upper.contains(&"SELECT".to_string()));
    }
}
