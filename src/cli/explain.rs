//! `profusion explain FILE.sql`: the physical plan of every query.

use crate::error::Result;
use crate::{JobKind, Pipeline};
use clap::Args;
use datafusion::physical_plan::displayable;

use super::{PipelineFile, SessionArgs};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    file: PipelineFile,
    #[command(flatten)]
    session: SessionArgs,
}

pub async fn explain(args: ExplainArgs) -> Result<()> {
    let text = args.file.read()?;
    let pipeline = Pipeline::load(&text, &args.session.options()).await?;
    for job in pipeline.jobs() {
        let kind = match &job.kind {
            JobKind::Insert => "INSERT".to_string(),
            JobKind::Query => "SELECT".to_string(),
            JobKind::View(name) => format!("MATERIALIZED VIEW {name}"),
            JobKind::Refresh(name) => format!("REFRESH MATERIALIZED VIEW {name}"),
        };
        let bounded = if job.is_bounded() {
            "bounded"
        } else {
            "unbounded"
        };
        println!("-- line {}: {kind} ({bounded})", job.line);
        println!("{}", displayable(job.plan.as_ref()).indent(true));
    }
    Ok(())
}
