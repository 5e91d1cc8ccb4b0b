//! profusion's pieces added to a session an application built itself
//! (`profusion::session::with_profusion`, as `examples/plain_session.rs` does): the
//! application's function and table stay, and a windowed query uses them beside
//! profusion's window table function, UDF library and a `datagen` table.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Volatility, create_udf};
use datafusion::physical_plan::ColumnarValue;
use datafusion::prelude::SessionContext;
use profusion::connector::create_table;
use profusion::session::{SessionOptions, with_profusion};
use profusion::sql::parse_create_table;
use profusion::stream::{PipelineContext, SourceReads};

use crate::common::lines;

/// A session of the application's own: `shout(text)` and a `names` table.
fn application_session() -> SessionContext {
    let app = SessionContext::new();
    app.register_udf(create_udf(
        "shout",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let texts = ColumnarValue::values_to_arrays(args)?;
            let texts = datafusion::common::cast::as_string_array(&texts[0])?;
            let loud: StringArray = texts.iter().map(|t| t.map(str::to_uppercase)).collect();
            Ok(ColumnarValue::Array(Arc::new(loud)))
        }),
    ));
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let rows = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec!["u000000", "u000001"])),
            Arc::new(StringArray::from(vec!["Ana", "Bo"])),
        ],
    )
    .unwrap();
    app.register_table(
        "names",
        Arc::new(MemTable::try_new(schema, vec![vec![rows]]).unwrap()),
    )
    .unwrap();
    app
}

#[tokio::test]
async fn the_pieces_register_into_a_session_the_application_built() {
    let app = application_session();
    let ctx = with_profusion(
        app.state(),
        &SessionOptions::default(),
        Arc::new(PipelineContext::default()),
    )
    .unwrap();
    let events = parse_create_table(
        "CREATE TABLE events (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts)
         WITH (connector = 'datagen', count = 240, users = 2, step = '1s', seed = 4)",
        1,
    )
    .unwrap();
    let table = create_table(&ctx.state(), events, SourceReads::Continuous)
        .await
        .unwrap();
    ctx.register_table("events", Arc::new(table)).unwrap();

    let batches = ctx
        .sql(
            "SELECT window_start, sum(events) AS events, count(*) AS users,
                    max(shout(n.name)) AS loudest, max(normalize_email(n.name || '@Example.COM')) AS email
             FROM (SELECT user_id, window_start, count(*) AS events
                   FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
                   GROUP BY user_id, window_start, window_end) w
             JOIN names n ON n.user_id = w.user_id
             GROUP BY window_start ORDER BY window_start",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let rows = lines(&batches);
    let expected: Vec<String> = (0..4)
        .map(|minute| format!("2026-01-01T00:0{minute}:00 | 60 | 2 | BO | bo@example.com"))
        .collect();
    assert_eq!(rows, expected);
    // The application's table and function are still there, as it registered them.
    assert!(ctx.table_exist("names").unwrap());
    assert!(datafusion::execution::FunctionRegistry::udf(&ctx, "shout").is_ok());
}
