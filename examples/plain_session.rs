//! profusion's pieces added to a DataFusion session an application built itself: its own
//! function and table stay, and profusion adds its window table functions, UDF library and
//! streaming rules. A windowed query then mixes all of them.
//!
//! ```text
//! cargo run --example plain_session
//! ```

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

#[tokio::main]
async fn main() -> profusion::Result<()> {
    // The application's own session: a function and a table of its own.
    let app = SessionContext::new();
    app.register_udf(create_udf(
        "tier",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let counts = ColumnarValue::values_to_arrays(args)?;
            let counts = datafusion::common::cast::as_int64_array(&counts[0])?;
            let tiers: StringArray = counts
                .iter()
                .map(|n| n.map(|n| if n >= 10 { "busy" } else { "quiet" }))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(tiers)))
        }),
    ));
    let names = Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
    ]);
    let rows = RecordBatch::try_new(
        Arc::new(names.clone()),
        vec![
            Arc::new(StringArray::from(vec!["u000000", "u000001", "u000002"])),
            Arc::new(StringArray::from(vec!["Ana", "Bo", "Cy"])),
        ],
    )
    .map_err(datafusion::error::DataFusionError::from)?;
    app.register_table(
        "names",
        Arc::new(MemTable::try_new(Arc::new(names), vec![vec![rows]])?),
    )?;

    // profusion added to it.
    let ctx = with_profusion(
        app.state(),
        &SessionOptions::default(),
        Arc::new(PipelineContext::default()),
    )?;
    let events = parse_create_table(
        "CREATE TABLE events (user_id TEXT NOT NULL, ts TIMESTAMP NOT NULL,
           WATERMARK FOR ts AS ts)
         WITH (connector = 'datagen', count = 600, users = 3, step = '1s', seed = 4)",
        1,
    )?;
    let table = create_table(&ctx.state(), events, SourceReads::Continuous).await?;
    ctx.register_table("events", Arc::new(table))?;

    ctx.sql(
        "SELECT n.name, w.window_start, w.events, tier(w.events) AS tier,
                normalize_email(lower(n.name) || '@Example.COM') AS email
         FROM (SELECT user_id, window_start, count(*) AS events
               FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
               GROUP BY user_id, window_start, window_end) w
         JOIN names n ON n.user_id = w.user_id
         ORDER BY w.window_start, n.name
         LIMIT 6",
    )
    .await?
    .show()
    .await?;
    Ok(())
}
