//! profusion inside a plain DataFusion application: a session with the window functions
//! and streaming rules, a `datagen` table declared from SQL, and a windowed query run
//! through the ordinary DataFrame API.
//!
//! ```text
//! cargo run --example embed
//! ```

use std::sync::Arc;

use profusion::connector::create_table;
use profusion::session::{SessionOptions, new_session};
use profusion::sql::parse_create_table;
use profusion::stream::PipelineContext;
use profusion::stream::SourceReads;

#[tokio::main]
async fn main() -> profusion::Result<()> {
    let ctx = new_session(
        &SessionOptions::default(),
        Arc::new(PipelineContext::default()),
    )?;

    let events = parse_create_table(
        "CREATE TABLE events (user_id TEXT NOT NULL, event_type TEXT, ts TIMESTAMP NOT NULL,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'datagen', count = 5000, users = 3, step = '50ms', seed = 9)",
        1,
    )?;
    let table = create_table(&ctx.state(), events, SourceReads::Continuous).await?;
    ctx.register_table("events", Arc::new(table))?;

    let frame = ctx
        .sql(
            "SELECT user_id, window_start, count(*) AS events,
                    count(*) FILTER (WHERE event_type = 'purchase') AS purchases
             FROM TUMBLE(events, ts, INTERVAL '1' MINUTE)
             GROUP BY user_id, window_start, window_end
             ORDER BY window_start, user_id",
        )
        .await?;
    frame.show().await?;
    Ok(())
}
