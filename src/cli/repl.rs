//! `profusion repl [--pipeline FILE.sql] [-c SQL]... [-f FILE]...`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::SessionOptions;
use crate::error::Result;
use crate::pipeline::Engine;
use crate::repl::{Flow, OutputFormat, Repl};
use crate::sql::{PipelineStatement, parse_pipeline, read_sql_file};
use crate::stream::SourceReads;

#[derive(Debug, Args)]
pub struct ReplArgs {
    /// Declare the tables and views of this pipeline first (its INSERTs and queries do
    /// not run).
    #[arg(long, value_name = "FILE.sql")]
    pipeline: Option<PathBuf>,
    /// Run these statements and commands, then exit (may be repeated).
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    commands: Vec<String>,
    /// Run the statements of this file, then exit (may be repeated).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// How query results are printed.
    #[arg(long, default_value = "table", value_parser = OutputFormat::parse)]
    format: OutputFormat,
    /// Workers to run each query on. Default: the machine's cores.
    #[arg(long, value_name = "N", default_value_t = SessionOptions::all_cores(), value_parser = super::parse_workers)]
    workers: usize,
    /// Memory limit for query state, e.g. 512MB or 2GB.
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
}

/// Runs the REPL; with `-c` or `-f`, stops at the first statement that fails and exits
/// non-zero.
pub async fn repl(args: ReplArgs) -> Result<ExitCode> {
    let engine = Engine::new(&SessionOptions {
        workers: args.workers,
        memory_limit: args.memory_limit,
        memory_pool: None,
        reads: SourceReads::Snapshot,
        group_task: None,
    })?;
    if let Some(path) = &args.pipeline {
        declare_pipeline(&engine, &read_sql_file(path)?).await?;
    }
    let mut repl = Repl::new(engine, args.format).await?;
    if args.commands.is_empty() && args.files.is_empty() {
        repl.interactive().await?;
        return Ok(ExitCode::SUCCESS);
    }
    repl.stop_on_error();
    let mut inputs: Vec<String> = args.commands;
    for path in &args.files {
        inputs.push(read_sql_file(path)?);
    }
    for input in inputs {
        let (ok, flow) = repl.run_text(&input).await;
        if !ok {
            return Ok(ExitCode::FAILURE);
        }
        if flow == Flow::Quit {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Declares the tables and views of a pipeline file; its INSERTs, queries and refreshes
/// are left out (a view then reads whatever its store holds).
pub async fn declare_pipeline(engine: &Engine, text: &str) -> Result<()> {
    for statement in parse_pipeline(text)? {
        match statement {
            PipelineStatement::Insert(_)
            | PipelineStatement::Query(_)
            | PipelineStatement::Refresh { .. } => {}
            declared => {
                engine.submit(declared).await?;
            }
        }
    }
    Ok(())
}
