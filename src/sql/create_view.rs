//! `CREATE MATERIALIZED VIEW name PRIMARY KEY (col, ...) WITH (key = 'value', ...) AS query`.
//!
//! The clauses between the name and `AS` may come in either order; the query after `AS` is
//! kept as written for DataFusion to plan.

use datafusion::sql::sqlparser::tokenizer::Token;

use super::create_table::{created_name, matching_paren, parse_options};
use super::options::WithOptions;
use super::tokens::{SpannedToken, tokenize};
use crate::error::{Error, Result};

/// A `CREATE MATERIALIZED VIEW` statement of a pipeline.
#[derive(Debug, Clone)]
pub struct CreateMaterializedView {
    /// The view name as written (unquoted).
    pub name: String,
    /// The columns that identify a row of the view, in declared order.
    pub primary_key: Vec<String>,
    /// The `WITH` options, still to be consumed by the view's store.
    pub options: WithOptions,
    /// The defining query's text.
    pub query: String,
    /// The line the statement starts on.
    pub line: usize,
}

/// Parses a `CREATE MATERIALIZED VIEW` statement starting at `line`.
pub fn parse_create_view(text: &str, line: usize) -> Result<CreateMaterializedView> {
    let all = tokenize(text, line)?;
    let tokens: Vec<&SpannedToken> = all.iter().filter(|t| !t.is_trivia()).collect();
    let syntax = |line: usize, message: String| Error::Syntax { line, message };

    let (name, mut at) = created_name(&tokens, "VIEW", "CREATE MATERIALIZED VIEW", "view", line)?;
    at += 1;
    let statement = format!("CREATE MATERIALIZED VIEW {name}");
    let mut options = WithOptions::new(statement.clone(), line);
    let mut primary_key = Vec::new();
    loop {
        let Some(token) = tokens.get(at) else {
            return Err(syntax(
                line,
                format!("{statement}: expected AS and a query"),
            ));
        };
        if token.is_word("AS") {
            at += 1;
            break;
        }
        if token.is_word("PRIMARY") && tokens.get(at + 1).is_some_and(|t| t.is_word("KEY")) {
            let (columns, close) = parenthesized(&tokens, at + 2, &statement, "PRIMARY KEY")?;
            primary_key = columns
                .split(|t| t.token == Token::Comma)
                .map(|column| match column {
                    [only] => match &only.token {
                        Token::Word(word) => Ok(word.value.clone()),
                        other => Err(syntax(
                            only.line,
                            format!("{statement}: expected a column name in PRIMARY KEY, found '{other}'"),
                        )),
                    },
                    _ => Err(syntax(
                        token.line,
                        format!("{statement}: PRIMARY KEY takes a list of column names"),
                    )),
                })
                .collect::<Result<_>>()?;
            at = close + 1;
        } else if token.is_word("WITH") {
            let (entries, close) = parenthesized(&tokens, at + 1, &statement, "WITH")?;
            parse_options(entries, &mut options)?;
            at = close + 1;
        } else {
            return Err(syntax(
                token.line,
                format!(
                    "{statement}: expected PRIMARY KEY (...), WITH (...) or AS, found '{}'",
                    token.token
                ),
            ));
        }
    }
    let Some(first) = tokens.get(at) else {
        return Err(syntax(
            line,
            format!("{statement}: expected a query after AS"),
        ));
    };
    if primary_key.is_empty() {
        return Err(syntax(
            line,
            format!("{statement}: a materialized view needs PRIMARY KEY (column, ...)"),
        ));
    }
    Ok(CreateMaterializedView {
        name,
        primary_key,
        options,
        query: text[first.start..]
            .trim_end()
            .trim_end_matches(';')
            .to_string(),
        line,
    })
}

/// The tokens inside the parentheses opening at `open`, and the position of the closing one.
fn parenthesized<'t, 'a>(
    tokens: &'t [&'a SpannedToken],
    open: usize,
    statement: &str,
    clause: &str,
) -> Result<(&'t [&'a SpannedToken], usize)> {
    let line = tokens.get(open.saturating_sub(1)).map_or(0, |t| t.line);
    if tokens.get(open).map(|t| &t.token) != Some(&Token::LParen) {
        return Err(Error::Syntax {
            line,
            message: format!("{statement}: expected '(' after {clause}"),
        });
    }
    let close = matching_paren(tokens, open).ok_or_else(|| Error::Syntax {
        line,
        message: format!("{statement}: unbalanced parentheses in {clause}"),
    })?;
    Ok((&tokens[open + 1..close], close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_key_options_and_query() {
        let view = parse_create_view(
            "CREATE MATERIALIZED VIEW user_profile PRIMARY KEY (user_id, region)\n\
             WITH (connector = 'sqlite', path = 'p.db') AS\n\
             SELECT user_id, region, count(*) AS n FROM events GROUP BY user_id, region;",
            3,
        )
        .unwrap();
        assert_eq!(view.name, "user_profile");
        assert_eq!(view.primary_key, ["user_id", "region"]);
        assert_eq!(
            view.query,
            "SELECT user_id, region, count(*) AS n FROM events GROUP BY user_id, region"
        );
        let mut options = view.options;
        assert_eq!(options.take("path").as_deref(), Some("p.db"));
        assert_eq!(view.line, 3);
    }

    #[test]
    fn clauses_come_in_either_order() {
        let view = parse_create_view(
            "CREATE MATERIALIZED VIEW v WITH (path = 'x.db') PRIMARY KEY (k) AS SELECT k FROM t GROUP BY k",
            1,
        )
        .unwrap();
        assert_eq!(view.primary_key, ["k"]);
    }

    #[test]
    fn a_view_without_a_key_is_refused() {
        let error = parse_create_view("CREATE MATERIALIZED VIEW v AS SELECT 1", 7)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 7") && error.contains("PRIMARY KEY"),
            "{error}"
        );
    }

    #[test]
    fn a_stray_word_is_named() {
        let error = parse_create_view(
            "CREATE MATERIALIZED VIEW v PRIMARY KEY (k) REFRESH AS SELECT k FROM t GROUP BY k",
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("found 'REFRESH'"), "{error}");
    }
}
