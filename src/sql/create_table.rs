//! `CREATE TABLE name (columns, WATERMARK FOR col AS expr) WITH (key = 'value', ...)`.
//!
//! The `WATERMARK` clause, columns' `METADATA FROM 'key' [VIRTUAL]` clauses and the `WITH`
//! options are cut out of the statement here; what remains is a plain `CREATE TABLE` that
//! DataFusion's own parser turns into a schema.

use datafusion::sql::sqlparser::tokenizer::Token;

use super::options::WithOptions;
use super::tokens::{SpannedToken, tokenize};
use crate::error::{Error, Result};

/// A `CREATE TABLE` statement of a pipeline.
#[derive(Debug, Clone)]
pub struct CreateTable {
    /// The table name as written (unquoted).
    pub name: String,
    /// The statement without its `WATERMARK` clause and `WITH` options.
    pub columns_sql: String,
    /// The declared watermark, if any.
    pub watermark: Option<WatermarkClause>,
    /// Columns filled from a record's metadata rather than its value.
    pub metadata: Vec<MetadataColumn>,
    /// The `WITH` options, still to be consumed by a connector.
    pub options: WithOptions,
    /// The line the statement starts on.
    pub line: usize,
}

/// `column type METADATA FROM 'key' [VIRTUAL]`: a column the connector fills from the
/// record's metadata (a Kafka message's key, partition, offset or timestamp).
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataColumn {
    pub column: String,
    pub key: String,
    pub line: usize,
}

/// `WATERMARK FOR column AS expression`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkClause {
    pub column: String,
    /// The expression's SQL text, e.g. `ts - INTERVAL '5' SECOND`.
    pub expr_sql: String,
}

/// Parses a `CREATE TABLE` statement starting at `line`.
pub fn parse_create_table(text: &str, line: usize) -> Result<CreateTable> {
    let all = tokenize(text, line)?;
    let tokens: Vec<&SpannedToken> = all.iter().filter(|t| !t.is_trivia()).collect();
    let syntax = |line: usize, message: String| Error::Syntax { line, message };

    let (name, mut at) = created_name(&tokens, "TABLE", "CREATE TABLE", "table", line)?;
    at += 1;
    if tokens.get(at).map(|t| &t.token) != Some(&Token::LParen) {
        return Err(syntax(
            line,
            format!("CREATE TABLE {name}: expected '(' and a column list"),
        ));
    }
    let open = at;
    let close = matching_paren(&tokens, open)
        .ok_or_else(|| syntax(line, format!("CREATE TABLE {name}: unbalanced parentheses")))?;

    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut metadata = Vec::new();
    let watermark = find_watermark(text, &tokens, open, close, &mut cuts, &mut metadata)?;

    let mut options = WithOptions::new(format!("CREATE TABLE {name}"), line);
    let mut after = close + 1;
    if tokens.get(after).is_some_and(|t| t.is_word("WITH")) {
        let with_open = after + 1;
        if tokens.get(with_open).map(|t| &t.token) != Some(&Token::LParen) {
            return Err(syntax(
                tokens[after].line,
                format!("CREATE TABLE {name}: expected '(' after WITH"),
            ));
        }
        let with_close = matching_paren(&tokens, with_open).ok_or_else(|| {
            syntax(
                line,
                format!("CREATE TABLE {name}: unbalanced parentheses in WITH"),
            )
        })?;
        parse_options(&tokens[with_open + 1..with_close], &mut options)?;
        cuts.push((tokens[after].start, tokens[with_close].end));
        after = with_close + 1;
    }
    if let Some(extra) = tokens.get(after) {
        return Err(syntax(
            extra.line,
            format!(
                "CREATE TABLE {name}: unexpected '{}' after the column list",
                extra.token
            ),
        ));
    }

    Ok(CreateTable {
        name,
        columns_sql: cut(text, &cuts),
        watermark,
        metadata,
        options,
        line,
    })
}

/// The name a `CREATE … <keyword> [IF NOT EXISTS] name` statement creates, and the position
/// of its token; `statement` and `what` word the errors (`CREATE TABLE`, `table`).
pub(super) fn created_name(
    tokens: &[&SpannedToken],
    keyword: &str,
    statement: &str,
    what: &str,
    line: usize,
) -> Result<(String, usize)> {
    let syntax = |message: String| Error::Syntax { line, message };
    let keyword_at = tokens
        .iter()
        .position(|t| t.is_word(keyword))
        .ok_or_else(|| syntax(format!("expected {statement}")))?;
    let mut at = keyword_at + 1;
    if tokens.get(at).is_some_and(|t| t.is_word("IF")) {
        at += 3; // IF NOT EXISTS
    }
    match tokens.get(at).map(|t| &t.token) {
        Some(Token::Word(word)) => Ok((word.value.clone(), at)),
        _ => Err(syntax(format!("expected a {what} name after {statement}"))),
    }
}

/// Finds `WATERMARK FOR col AS expr` among the columns between `open` and `close`.
fn find_watermark(
    text: &str,
    tokens: &[&SpannedToken],
    open: usize,
    close: usize,
    cuts: &mut Vec<(usize, usize)>,
    metadata: &mut Vec<MetadataColumn>,
) -> Result<Option<WatermarkClause>> {
    let mut depth = 0;
    let mut item_start = open + 1;
    let mut watermark = None;
    for i in open + 1..=close {
        match tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen if depth > 0 => depth -= 1,
            Token::Comma | Token::RParen if depth == 0 => {
                let item = &tokens[item_start..i];
                if item.first().is_some_and(|t| t.is_word("WATERMARK")) {
                    let line = item[0].line;
                    if watermark.is_some() {
                        return Err(Error::Syntax {
                            line,
                            message: "a table can declare one WATERMARK".into(),
                        });
                    }
                    watermark = Some(parse_watermark(text, item)?);
                    // Cut the clause with the comma before it (or after it, when first).
                    let from = if item_start > open + 1 {
                        tokens[item_start - 1].start
                    } else {
                        item[0].start
                    };
                    let to = if item_start == open + 1 && tokens[i].token == Token::Comma {
                        tokens[i].end
                    } else {
                        item[item.len() - 1].end
                    };
                    cuts.push((from, to));
                } else if let Some(at) = item.iter().position(|t| t.is_word("METADATA")) {
                    metadata.push(parse_metadata(item, at)?);
                    cuts.push((item[at].start, item[item.len() - 1].end));
                }
                item_start = i + 1;
            }
            _ => {}
        }
    }
    Ok(watermark)
}

/// `METADATA FROM 'key' [VIRTUAL]` at `item[at..]`, `item[0]` being the column name.
fn parse_metadata(item: &[&SpannedToken], at: usize) -> Result<MetadataColumn> {
    let line = item[at].line;
    let bad = || Error::Syntax {
        line,
        message: "expected <column> <type> METADATA FROM '<key>' [VIRTUAL]".into(),
    };
    let column = match &item[0].token {
        Token::Word(word) if at > 1 => word.value.clone(),
        _ => return Err(bad()),
    };
    let key = match item.get(at + 2).map(|t| &t.token) {
        Some(Token::SingleQuotedString(key)) if item[at + 1].is_word("FROM") => key.clone(),
        _ => return Err(bad()),
    };
    match &item[at + 3..] {
        [] => {}
        [only] if only.is_word("VIRTUAL") => {}
        _ => return Err(bad()),
    }
    Ok(MetadataColumn { column, key, line })
}

fn parse_watermark(text: &str, item: &[&SpannedToken]) -> Result<WatermarkClause> {
    let line = item[0].line;
    let bad = || Error::Syntax {
        line,
        message: "expected WATERMARK FOR <column> AS <expression>".into(),
    };
    if item.len() < 5 || !item[1].is_word("FOR") || !item[3].is_word("AS") {
        return Err(bad());
    }
    let column = match &item[2].token {
        Token::Word(word) => word.value.clone(),
        _ => return Err(bad()),
    };
    let expr_sql = text[item[4].start..item[item.len() - 1].end].to_string();
    Ok(WatermarkClause { column, expr_sql })
}

/// Parses `key = value, ...` where a key is a word, a dotted word or a quoted string.
pub(super) fn parse_options(tokens: &[&SpannedToken], options: &mut WithOptions) -> Result<()> {
    for entry in tokens.split(|t| t.token == Token::Comma) {
        if entry.is_empty() {
            continue;
        }
        let line = entry[0].line;
        let eq = entry
            .iter()
            .position(|t| t.token == Token::Eq)
            .ok_or_else(|| Error::Syntax {
                line,
                message: "expected key = value in WITH options".into(),
            })?;
        let key: String = entry[..eq].iter().map(|t| literal_text(&t.token)).collect();
        let value: String = entry[eq + 1..]
            .iter()
            .map(|t| literal_text(&t.token))
            .collect();
        if key.is_empty() || value.is_empty() {
            return Err(Error::Syntax {
                line,
                message: format!("expected key = value in WITH options, found '{key}={value}'"),
            });
        }
        options.insert(key, value)?;
    }
    Ok(())
}

/// The text of a token with quotes removed from strings and quoted identifiers.
fn literal_text(token: &Token) -> String {
    match token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s.clone(),
        Token::Word(word) => word.value.clone(),
        other => other.to_string(),
    }
}

pub(super) fn matching_paren(tokens: &[&SpannedToken], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn cut(text: &str, cuts: &[(usize, usize)]) -> String {
    let mut cuts = cuts.to_vec();
    cuts.sort();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (from, to) in cuts {
        out.push_str(&text[at..from]);
        at = to;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_watermark_and_options() {
        let sql = "CREATE TABLE events (\n  user_id TEXT,\n  ts TIMESTAMP NOT NULL,\n  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND\n) WITH (connector = 'datagen', 'rows_per_second' = 100, seed = 7)";
        let table = parse_create_table(sql, 10).unwrap();
        assert_eq!(table.name, "events");
        assert_eq!(
            table.watermark,
            Some(WatermarkClause {
                column: "ts".into(),
                expr_sql: "ts - INTERVAL '5' SECOND".into()
            })
        );
        assert_eq!(
            table
                .columns_sql
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            "CREATE TABLE events ( user_id TEXT, ts TIMESTAMP NOT NULL )"
        );
        let mut options = table.options;
        assert_eq!(options.take("connector").as_deref(), Some("datagen"));
        assert_eq!(options.take("rows_per_second").as_deref(), Some("100"));
        assert_eq!(options.take("seed").as_deref(), Some("7"));
    }

    #[test]
    fn watermark_may_come_first_and_keys_may_be_dotted() {
        let sql = "CREATE TABLE t (WATERMARK FOR ts AS ts, ts TIMESTAMP) WITH (watermark.idle_timeout = '1s')";
        let mut table = parse_create_table(sql, 1).unwrap();
        assert_eq!(table.columns_sql, "CREATE TABLE t ( ts TIMESTAMP) ");
        assert_eq!(
            table.options.take("watermark.idle_timeout").as_deref(),
            Some("1s")
        );
    }

    #[test]
    fn metadata_clauses_are_cut_out_and_recorded() {
        let sql = "CREATE TABLE t (k TEXT METADATA FROM 'key', v TEXT, p INT METADATA FROM 'partition' VIRTUAL, ts TIMESTAMP) WITH (a = 'b')";
        let table = parse_create_table(sql, 1).unwrap();
        assert_eq!(
            table.columns_sql,
            "CREATE TABLE t (k TEXT , v TEXT, p INT , ts TIMESTAMP) "
        );
        let keys: Vec<(&str, &str)> = table
            .metadata
            .iter()
            .map(|m| (m.column.as_str(), m.key.as_str()))
            .collect();
        assert_eq!(keys, vec![("k", "key"), ("p", "partition")]);
        let error = parse_create_table("CREATE TABLE t (k TEXT METADATA 'key')", 3).unwrap_err();
        assert!(error.to_string().contains("METADATA FROM"), "{error}");
    }

    #[test]
    fn reports_trailing_garbage_with_its_line() {
        let error = parse_create_table("CREATE TABLE t (a INT)\nPARTITIONED", 4)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "line 5: CREATE TABLE t: unexpected 'PARTITIONED' after the column list"
        );
    }
}
