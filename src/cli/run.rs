//! `profusion run FILE.sql`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::Pipeline;
use crate::error::{Error, Result};
use crate::pipeline::group::{GroupOptions, GroupRun};
use crate::pipeline::{StatusLine, status_text};
use crate::serve::{HttpLimits, Scope, Tokens, metrics_router, serve_on_own_thread};
use crate::stream::PipelineContext;
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
    /// Serve `GET /metrics` (Prometheus text) on this address while the pipeline runs.
    /// Tokens of the metrics or admin scope (PROFUSION_METRICS_TOKENS,
    /// PROFUSION_ADMIN_TOKENS) guard it; on a loopback address none are needed.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

pub async fn run(args: RunArgs) -> Result<()> {
    let text = args.file.read()?;
    let checkpoints = args.checkpoints.options();
    if let Some(group) = args.group.options(checkpoints.clone()) {
        return run_in_group(&args, &text, group).await;
    }
    let pipeline = Pipeline::load(&text, &args.session.options()).await?;
    let shared = Arc::clone(pipeline.engine().shared());
    let _metrics = MetricsServer::start(args.metrics_listen, &shared).await?;

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
    let _metrics = MetricsServer::start(args.metrics_listen, run.engine().shared()).await?;
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

/// `--metrics-listen`: `/metrics` served until the run ends (dropped).
struct MetricsServer(Arc<Notify>);

impl MetricsServer {
    async fn start(
        at: Option<SocketAddr>,
        pipeline: &Arc<PipelineContext>,
    ) -> Result<Option<Self>> {
        let Some(at) = at else {
            return Ok(None);
        };
        let tokens: Vec<(Scope, String)> = Tokens::from_env(|name| std::env::var(name).ok())
            .into_iter()
            .filter(|(scope, _)| matches!(scope, Scope::Metrics | Scope::Admin))
            .collect();
        let invalid = |message: String| Error::Io {
            context: format!("--metrics-listen {at}"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
        };
        let tokens = match (tokens.is_empty(), at.ip().is_loopback()) {
            (false, _) => Tokens::new(tokens)?,
            (true, true) => Tokens::open(),
            (true, false) => {
                return Err(invalid(format!(
                    "{at} is not a loopback address: set PROFUSION_METRICS_TOKENS so that only scrapers read the metrics"
                )));
            }
        };
        let listener = std::net::TcpListener::bind(at)
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(|source| Error::Io {
                context: format!("listening on {at}"),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| Error::Io {
            context: "the metrics address".into(),
            source,
        })?;
        eprintln!("metrics on http://{address}/metrics");
        let shutdown = Arc::new(Notify::new());
        let router = metrics_router(Arc::clone(pipeline), tokens);
        let stop = Arc::clone(&shutdown);
        tokio::spawn(async move {
            if let Err(error) =
                serve_on_own_thread(listener, router, HttpLimits::default(), None, stop).await
            {
                eprintln!("warning: the metrics endpoint stopped: {error}");
            }
        });
        Ok(Some(Self(shutdown)))
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}
