//! `profusion checkpoints list DIR`: the checkpoints in a checkpoint directory, newest
//! last, complete or cut short, with their size, duration and what each job saved; for a
//! consumer group's directory (`run --group`), those of each partition's task.

use std::time::{Duration, UNIX_EPOCH};

use clap::Subcommand;

use crate::error::Result;
use crate::pipeline::checkpoint::CheckpointStore;
use crate::pipeline::group::task_location;

#[derive(Debug, Subcommand)]
pub enum CheckpointsCommand {
    /// List the checkpoints in DIR (a folder or object-store URL).
    List {
        /// The directory given to `run --checkpoint-dir`.
        dir: String,
        /// Also show each job's split positions and state sizes.
        #[arg(long)]
        verbose: bool,
    },
}

pub async fn run(command: CheckpointsCommand) -> Result<()> {
    match command {
        CheckpointsCommand::List { dir, verbose } => list(&dir, verbose).await,
    }
}

async fn list(dir: &str, verbose: bool) -> Result<()> {
    let store = CheckpointStore::open(dir)?;
    let tasks = store.group_tasks().await?;
    if tasks.is_empty() {
        return list_one(&store, verbose).await;
    }
    for partition in tasks {
        let location = task_location(dir, partition);
        println!("partition {partition}'s task ({location}):");
        list_one(&CheckpointStore::open(&location)?, verbose).await?;
    }
    Ok(())
}

async fn list_one(store: &CheckpointStore, verbose: bool) -> Result<()> {
    let listed = store.list().await?;
    if listed.is_empty() {
        println!("no checkpoints in {}", store.display());
        return Ok(());
    }
    println!(
        "{:>8}  {:<10}  {:<24}  {:>10}  {:>8}  jobs",
        "epoch", "state", "completed (UTC)", "bytes", "took"
    );
    for checkpoint in &listed {
        let Some(manifest) = &checkpoint.manifest else {
            let state = match checkpoint.damaged {
                Some(_) => "damaged",
                None => "incomplete",
            };
            println!(
                "{:>8}  {:<10}  {:<24}  {:>10}  {:>8}  -",
                checkpoint.epoch, state, "-", checkpoint.bytes, "-"
            );
            if let (true, Some(reason)) = (verbose, &checkpoint.damaged) {
                println!("          {reason}");
            }
            continue;
        };
        let completed = UNIX_EPOCH + Duration::from_millis(manifest.completed_at_ms.max(0) as u64);
        println!(
            "{:>8}  {:<10}  {:<24}  {:>10}  {:>6}ms  {}",
            manifest.epoch,
            "complete",
            format_utc(completed),
            checkpoint.bytes,
            manifest.duration_ms,
            manifest.jobs.len()
        );
        if verbose {
            for job in &manifest.jobs {
                println!("          job {}: {}", job.job, one_line(&job.sql));
                for (split, position) in &job.positions {
                    println!("            {split} at {position}");
                }
                for state in &job.states {
                    println!(
                        "            {}: {} rows, {} bytes",
                        state.id, state.rows, state.bytes
                    );
                }
            }
        }
    }
    Ok(())
}

/// A statement on one line, shortened.
fn one_line(sql: &str) -> String {
    let line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// `2026-11-22 15:04:05.123` for a time after the Unix epoch.
fn format_utc(time: std::time::SystemTime) -> String {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    datafusion::arrow::temporal_conversions::timestamp_ms_to_datetime(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| millis.to_string())
}
