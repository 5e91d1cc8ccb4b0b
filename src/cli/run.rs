//! `profusion run FILE.sql`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use crate::Pipeline;
use crate::error::Result;
use crate::pipeline::group::{GroupOptions, GroupRun};
use crate::pipeline::{StatusLine, status_text};
use clap::Args;

use super::{CheckpointArgs, GroupArgs, PipelineFile, SessionArgs, stop_on_ctrl_c};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    file: PipelineFile,
    #[command(flatten)]
    session: SessionArgs,
    /// Show the live status line even when standard error is not a terminal.
    #[arg(long)]
    progress: bool,
    /// Never show the live status line.
    #[arg(long, conflicts_with = "progress")]
    quiet: bool,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    #[command(flatten)]
    group: GroupArgs,
}

pub async fn run(args: RunArgs) -> Result<()> {
    let text = args.file.read()?;
    let checkpoints = args.checkpoints.options();
    if let Some(group) = args.group.options(checkpoints.clone()) {
        return run_in_group(&args, &text, group).await;
    }
    let pipeline = Pipeline::load(&text, &args.session.options()).await?;
    let shared = Arc::clone(pipeline.engine().shared());

    let stop = Arc::clone(&shared);
    stop_on_ctrl_c(move || stop.stop.stop());

    let show_status = !args.quiet && (args.progress || std::io::stderr().is_terminal());
    let status =
        show_status.then(|| StatusLine::start(Arc::clone(&shared), Duration::from_millis(500)));
    let summary = pipeline.run_with(checkpoints).await;
    drop(status);
    let summary = summary?;
    if show_status || summary.stopped {
        let rate = summary.events_in as f64 / summary.elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "{} in {:.2}s: {}",
            if summary.stopped {
                "stopped"
            } else {
                "finished"
            },
            summary.elapsed.as_secs_f64(),
            status_text(&shared, rate)
        );
    }
    Ok(())
}

/// `run --group`: this process's share of a pipeline run by several.
async fn run_in_group(args: &RunArgs, text: &str, options: GroupOptions) -> Result<()> {
    let run = GroupRun::load(text, &args.session.options(), options).await?;
    let stop = run.stop_signal();
    stop_on_ctrl_c(move || stop.stop());
    let summary = run.run().await?;
    eprintln!(
        "left the group after {:.2}s: {} events in, {} rows out",
        summary.elapsed.as_secs_f64(),
        summary.events_in,
        summary.rows_out
    );
    Ok(())
}
