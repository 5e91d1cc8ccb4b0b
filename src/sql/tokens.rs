//! Tokens of a SQL text with their byte ranges, so statements and clauses can be cut out of
//! the source text exactly as the user wrote them.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::error::{Error, Result};

/// A token with the byte range it covers in the text it came from.
#[derive(Debug, Clone)]
pub struct SpannedToken {
    pub token: Token,
    pub start: usize,
    pub end: usize,
    pub line: usize,
}

impl SpannedToken {
    /// True for a keyword or identifier spelled `word`, in any case.
    pub fn is_word(&self, word: &str) -> bool {
        matches!(&self.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }

    /// True for whitespace and comments.
    pub fn is_trivia(&self) -> bool {
        matches!(self.token, Token::Whitespace(_))
    }
}

/// Tokenizes `text`; `first_line` is the line of `text`'s first character in its file.
pub fn tokenize(text: &str, first_line: usize) -> Result<Vec<SpannedToken>> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| Error::Syntax {
            line: first_line + e.location.line.saturating_sub(1) as usize,
            message: e.message,
        })?;
    let lines = LineIndex::new(text);
    Ok(tokens
        .into_iter()
        .filter(|t| t.token != Token::EOF)
        .map(|t| SpannedToken {
            start: lines.offset(t.span.start),
            end: lines.offset(t.span.end),
            line: first_line + t.span.start.line.saturating_sub(1) as usize,
            token: t.token,
        })
        .collect())
}

/// Converts the tokenizer's (line, column) locations into byte offsets.
struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, line_starts }
    }

    fn offset(&self, location: Location) -> usize {
        let line = (location.line as usize).max(1) - 1;
        let Some(&line_start) = self.line_starts.get(line) else {
            return self.text.len();
        };
        let column = (location.column as usize).max(1) - 1;
        self.text[line_start..]
            .char_indices()
            .nth(column)
            .map(|(i, _)| line_start + i)
            .unwrap_or(self.text.len())
    }
}
