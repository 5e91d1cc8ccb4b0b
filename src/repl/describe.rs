//! `\d` and `\d name`: what a session has declared, psql-style. Tables show their
//! connector and `WITH` options (secrets masked), materialized views their key and store.

use std::fmt::Write;

use datafusion::catalog::TableProvider;
use datafusion::datasource::TableType;

use crate::connector::StreamTable;
use crate::pipeline::Engine;
use crate::sql::masked_option;

/// What kind of thing `name` is, and what it reads or writes.
fn kind_of(engine: &Engine, name: &str, table: &dyn TableProvider) -> (String, String) {
    if engine.view(name).is_some() {
        let store = match table.downcast_ref::<StreamTable>() {
            Some(t) => t.connector().to_string(),
            None => String::new(),
        };
        return ("materialized view".into(), store);
    }
    match table.downcast_ref::<StreamTable>() {
        Some(t) => {
            let halves = match (t.source().is_ok(), t.sink().is_ok()) {
                (true, true) => "source, sink",
                (true, false) => "source",
                (false, true) => "sink",
                (false, false) => "",
            };
            (format!("table ({halves})"), t.connector().to_string())
        }
        None => match table.table_type() {
            TableType::View => ("view".into(), String::new()),
            _ => ("table".into(), String::new()),
        },
    }
}

/// `\d`: one line per table or view.
pub async fn list_tables(engine: &Engine) -> String {
    let names = engine.table_names();
    if names.is_empty() {
        return "No tables. CREATE TABLE ... WITH (connector = ...) declares one.\n".into();
    }
    let mut rows = Vec::new();
    for name in names {
        if let Ok(table) = engine.context().table_provider(name.as_str()).await {
            let (kind, connector) = kind_of(engine, &name, table.as_ref());
            rows.push([name, kind, connector]);
        }
    }
    let header = ["name", "kind", "connector"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |cells: [&str; 3], out: &mut String| {
        let _ = writeln!(
            out,
            "{:w0$} | {:w1$} | {}",
            cells[0],
            cells[1],
            cells[2],
            w0 = widths[0],
            w1 = widths[1]
        );
    };
    line(header, &mut out);
    let _ = writeln!(
        out,
        "{}-+-{}-+-{}",
        "-".repeat(widths[0]),
        "-".repeat(widths[1]),
        "-".repeat(widths[2])
    );
    for row in &rows {
        line([&row[0], &row[1], &row[2]], &mut out);
    }
    out
}

/// `\d name`: columns, then connector, key, watermark and options.
pub async fn describe(engine: &Engine, name: &str) -> Result<String, String> {
    let table = engine
        .context()
        .table_provider(name)
        .await
        .map_err(|_| format!("no table or view named '{name}' (\\d lists them)"))?;
    let (kind, connector) = kind_of(engine, name, table.as_ref());
    let mut out = format!("{kind} {name}\n");
    let schema = table.schema();
    let width = schema
        .fields()
        .iter()
        .map(|f| f.name().len())
        .max()
        .unwrap_or(0)
        .max("column".len());
    let types: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect();
    let type_width = types.iter().map(String::len).max().unwrap_or(0).max(4);
    let _ = writeln!(
        out,
        "  {:width$} | {:type_width$} | nullable",
        "column", "type"
    );
    for (field, data_type) in schema.fields().iter().zip(&types) {
        let _ = writeln!(
            out,
            "  {:width$} | {data_type:type_width$} | {}",
            field.name(),
            if field.is_nullable() { "yes" } else { "no" }
        );
    }
    if !connector.is_empty() {
        let _ = writeln!(out, "connector: {connector}");
    }
    if let Some(view) = engine.view(name) {
        let _ = writeln!(out, "primary key: {}", view.primary_key.join(", "));
        for score in &view.scores {
            let _ = writeln!(out, "score {}: {}", score.name, score.sql);
        }
        let _ = writeln!(out, "query: {}", view.query.trim());
    }
    if let Some(stream) = table.downcast_ref::<StreamTable>() {
        if let Some(watermark) = stream.source().ok().and_then(|s| s.watermark.as_ref()) {
            let _ = writeln!(
                out,
                "watermark: FOR {} AS {}",
                watermark.column, watermark.sql
            );
        }
        let options: Vec<String> = stream
            .options()
            .iter()
            .filter(|(key, _)| key.as_str() != "connector")
            .map(|(key, value)| format!("  '{key}' = '{}'", masked_option(key, value)))
            .collect();
        if !options.is_empty() {
            let _ = writeln!(out, "options:\n{}", options.join("\n"));
        }
    }
    Ok(out)
}
