//! Command-line interface: `run`, `repl`, `serve`, `explain` and `bench`, parsed by clap.
//! The `profusion` binary only calls [`Cli::run`].

mod checkpoints;
mod explain;
mod repl;
mod run;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::SessionOptions;
use crate::error::Result;
use crate::stream::SourceReads;
use clap::{Args, Parser, Subcommand};

/// Streaming SQL for real-time personalization.
#[derive(Debug, Parser)]
#[command(name = "profusion", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline until its bounded inputs end, or until Ctrl-C.
    Run(run::RunArgs),
    /// Ad-hoc SQL over a pipeline's tables: Kafka topics as snapshots, views as tables.
    Repl(repl::ReplArgs),
    /// Run a pipeline and serve its profiles, scores, webhook ingest and metrics over HTTP.
    Serve(Box<serve::ServeArgs>),
    /// Show the plan of every query of a pipeline, streaming operators with their parameters.
    Explain(explain::ExplainArgs),
    /// Measure the hot paths on one worker thread (build with --release).
    Bench(crate::bench::BenchArgs),
    /// Inspect the checkpoints of `run --checkpoint-dir`.
    #[command(subcommand)]
    Checkpoints(checkpoints::CheckpointsCommand),
}

/// Options shared by commands that load a pipeline.
#[derive(Debug, Clone, Args)]
pub struct SessionArgs {
    /// Memory limit for query state, e.g. 512MB or 2GB.
    #[arg(long, value_parser = parse_bytes)]
    memory_limit: Option<usize>,
    /// Read Kafka topics (and followed memory tables) as bounded snapshots: up to their end
    /// when the pipeline starts, then finish.
    #[arg(long)]
    bounded: bool,
    /// Workers to run each query on: sources' splits are spread over them and keyed state
    /// (windows, views, joins) is split among them by key. Default: the machine's cores.
    #[arg(long, value_name = "N", default_value_t = SessionOptions::all_cores(), value_parser = parse_workers)]
    workers: usize,
}

/// `--checkpoint-dir` and `--checkpoint-interval`, for `run` and `serve`.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Checkpoint the continuous jobs into this folder or object-store URL (file://,
    /// s3://), and resume from its latest complete checkpoint.
    #[arg(long, value_name = "URL")]
    checkpoint_dir: Option<String>,
    /// How often to checkpoint, e.g. 10s or 1m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::sql::parse_duration)]
    checkpoint_interval: std::time::Duration,
}

impl CheckpointArgs {
    /// Where and how often to checkpoint; `None` without `--checkpoint-dir`.
    fn options(&self) -> Option<crate::pipeline::checkpoint::CheckpointOptions> {
        Some(crate::pipeline::checkpoint::CheckpointOptions {
            location: self.checkpoint_dir.clone()?,
            interval: self.checkpoint_interval,
            writer: None,
        })
    }
}

/// `--group` and its settings, for `run` and `serve`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Share the pipeline with every process started with the same group: Kafka's consumer
    /// group deals the source topics' partitions out among them, and each partition's state
    /// is checkpointed under --checkpoint-dir for whichever process holds it next. Each
    /// partition's task runs on one worker (--workers does not apply); `serve` reads views
    /// from their shared store on every request.
    #[arg(
        long,
        value_name = "NAME",
        requires = "checkpoint_dir",
        conflicts_with = "bounded"
    )]
    group: Option<String>,
    /// With --group: how long the group waits for a process that stopped answering before
    /// giving its partitions to the others.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::sql::parse_duration)]
    session_timeout: std::time::Duration,
}

impl GroupArgs {
    /// The group this process joins, checkpointing as `checkpoints` says; `None` without
    /// `--group`.
    fn options(
        &self,
        checkpoints: Option<crate::pipeline::checkpoint::CheckpointOptions>,
    ) -> Option<crate::pipeline::group::GroupOptions> {
        Some(crate::pipeline::group::GroupOptions {
            group: self.group.clone()?,
            checkpoints: checkpoints?,
            session_timeout: self.session_timeout,
        })
    }
}

/// A worker count: a whole number from 1.
pub(crate) fn parse_workers(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(workers) if workers >= 1 => Ok(workers),
        _ => Err(format!("'{text}' is not a number of workers (1 or more)")),
    }
}

impl SessionArgs {
    fn options(&self) -> SessionOptions {
        SessionOptions {
            workers: self.workers,
            memory_limit: self.memory_limit,
            memory_pool: None,
            reads: match self.bounded {
                true => SourceReads::Snapshot,
                false => SourceReads::Continuous,
            },
            group_task: None,
        }
    }
}

/// The whole program: parses the command line, runs the command on a multi-threaded
/// runtime and prints any error. Synchronous on purpose: the binary calls only this, so the
/// async code it reaches is compiled once, here, not again in the binary.
pub fn main() -> ExitCode {
    let command = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command.run()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

impl Cli {
    /// Runs the command; the exit code says whether it succeeded.
    pub async fn run(self) -> Result<ExitCode> {
        match self.command {
            Command::Run(args) => run::run(args).await,
            Command::Repl(args) => return repl::repl(args).await,
            Command::Serve(args) => serve::serve(*args).await,
            Command::Explain(args) => explain::explain(args).await,
            Command::Bench(args) => crate::bench::bench(args).await,
            Command::Checkpoints(command) => checkpoints::run(command).await,
        }
        .map(|()| ExitCode::SUCCESS)
    }
}

/// On the first Ctrl-C or SIGTERM (what Kubernetes and systemd send to stop a process),
/// says that sinks are flushing and calls `stop`; a second one exits at once.
fn stop_on_ctrl_c(stop: impl FnOnce() + Send + 'static) {
    tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let mut signalled = async || {
            tokio::select! {
                interrupted = tokio::signal::ctrl_c() => interrupted.is_ok(),
                terminated = async {
                    match &mut terminate {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                } => terminated.is_some(),
            }
        };
        if signalled().await {
            eprintln!("\nstopping: sinks are flushing; press Ctrl-C again to abort");
            stop();
            if signalled().await {
                std::process::exit(130);
            }
        }
    });
}

/// `512MB`, `2GB`, `1024` (bytes).
fn parse_bytes(text: &str) -> std::result::Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: usize = text[..split]
        .parse()
        .map_err(|_| format!("bad size '{text}'"))?;
    let unit = match text[split..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown size unit '{other}' (use KB, MB or GB)")),
    };
    Ok(number * unit)
}

/// The path arguments of commands that take a pipeline.
#[derive(Debug, Clone, Args)]
pub struct PipelineFile {
    /// The pipeline: .sql files of CREATE TABLE, CREATE VIEW, INSERT and SELECT statements,
    /// read in order as one (`tables.sql q7.sql`); lines count across them.
    #[arg(required = true, num_args = 1..)]
    files: Vec<PathBuf>,
}

impl PipelineFile {
    /// The files' text, in order, their `${VARIABLES}` replaced from the environment.
    fn read(&self) -> Result<String> {
        let texts = self
            .files
            .iter()
            .map(|file| crate::sql::read_sql_file(file))
            .collect::<Result<Vec<_>>>()?;
        Ok(texts.join("\n"))
    }

    /// The files' names, for messages.
    fn display(&self) -> String {
        let names: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        names.join(" ")
    }
}
