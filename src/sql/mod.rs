//! The pipeline language: a `.sql` file split into statements, each classified into what the
//! pipeline does with it. `CREATE TABLE` (with `WATERMARK` and `WITH` options) and
//! `CREATE MATERIALIZED VIEW` are parsed here; everything else is standard SQL that DataFusion plans.

mod create_table;
mod create_view;
mod dialect;
mod duration;
mod options;
mod split;
mod tokens;
mod variables;

pub use create_table::{CreateTable, MetadataColumn, WatermarkClause, parse_create_table};
pub use create_view::{CreateMaterializedView, parse_create_view};
pub use dialect::{StreamingDialect, sql_frame};
pub use duration::parse_duration;
pub use options::{WithOptions, masked_option};
pub use split::{SourceStatement, split_statements};
pub use variables::{read_sql_file, substitute_variables};

use crate::error::Result;
use tokens::tokenize;

/// A statement of a pipeline file, by what the pipeline does with it.
#[derive(Debug, Clone)]
pub enum PipelineStatement {
    /// `CREATE TABLE ... WITH (connector = ...)`: a source or sink.
    CreateTable(CreateTable),
    /// `CREATE MATERIALIZED VIEW ... PRIMARY KEY (...) AS SELECT ...`: a keyed view kept in
    /// a store.
    CreateView(CreateMaterializedView),
    /// `INSERT INTO sink SELECT ...`: a continuous query into a sink.
    Insert(SourceStatement),
    /// A bare `SELECT` (or `WITH ... SELECT`): streams its rows to standard output.
    Query(SourceStatement),
    /// `REFRESH MATERIALIZED VIEW name`: run a view over a bounded query now.
    Refresh { view: String, line: usize },
    /// Anything else DataFusion runs once at start-up: `CREATE VIEW`, `SET`, `DROP`, ...
    Setup(SourceStatement),
}

impl PipelineStatement {
    /// The line the statement starts on.
    pub fn line(&self) -> usize {
        match self {
            Self::CreateTable(table) => table.line,
            Self::CreateView(view) => view.line,
            Self::Refresh { line, .. } => *line,
            Self::Insert(s) | Self::Query(s) | Self::Setup(s) => s.line,
        }
    }
}

/// Parses a pipeline file into its statements.
pub fn parse_pipeline(text: &str) -> Result<Vec<PipelineStatement>> {
    split_statements(text)?.into_iter().map(classify).collect()
}

/// `REFRESH MATERIALIZED VIEW name`.
fn parse_refresh(statement: &SourceStatement) -> Result<PipelineStatement> {
    let tokens = tokenize(&statement.text, statement.line)?;
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| {
            !t.is_trivia() && t.token != datafusion::sql::sqlparser::tokenizer::Token::SemiColon
        })
        .map(|t| match &t.token {
            datafusion::sql::sqlparser::tokenizer::Token::Word(w) => w.value.clone(),
            other => other.to_string(),
        })
        .collect();
    match words.as_slice() {
        [refresh, materialized, view, name]
            if refresh.eq_ignore_ascii_case("REFRESH")
                && materialized.eq_ignore_ascii_case("MATERIALIZED")
                && view.eq_ignore_ascii_case("VIEW") =>
        {
            Ok(PipelineStatement::Refresh {
                view: name.clone(),
                line: statement.line,
            })
        }
        _ => Err(crate::error::Error::Syntax {
            line: statement.line,
            message: "expected REFRESH MATERIALIZED VIEW name".into(),
        }),
    }
}

/// Decides what kind of statement `statement` is from its leading keywords.
pub fn classify(statement: SourceStatement) -> Result<PipelineStatement> {
    let tokens = tokenize(&statement.text, statement.line)?;
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| !t.is_trivia())
        .take(4)
        .map(|t| t.token.to_string().to_ascii_uppercase())
        .collect();
    let first = words.first().map(String::as_str).unwrap_or("");
    let is_create_table = first == "CREATE"
        && words
            .iter()
            .skip(1)
            .take_while(|w| matches!(w.as_str(), "OR" | "REPLACE" | "TEMPORARY" | "TABLE"))
            .any(|w| w == "TABLE");
    let is_create_view = first == "CREATE"
        && words
            .iter()
            .skip(1)
            .take_while(|w| matches!(w.as_str(), "OR" | "REPLACE" | "MATERIALIZED"))
            .any(|w| w == "MATERIALIZED");
    Ok(match first {
        _ if is_create_view => {
            PipelineStatement::CreateView(parse_create_view(&statement.text, statement.line)?)
        }
        _ if is_create_table => {
            PipelineStatement::CreateTable(parse_create_table(&statement.text, statement.line)?)
        }
        "REFRESH" => parse_refresh(&statement)?,
        "INSERT" => PipelineStatement::Insert(statement),
        "SELECT" | "WITH" | "VALUES" | "(" | "EXPLAIN" | "SHOW" | "DESCRIBE" => {
            PipelineStatement::Query(statement)
        }
        _ => PipelineStatement::Setup(statement),
    })
}

/// `name` as an SQL identifier, quoted.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal: `'it''s'`.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
