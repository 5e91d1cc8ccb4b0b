//! `profusion repl`: ad-hoc SQL over a pipeline's tables, shaped like datafusion-cli and
//! psql. Kafka tables are read as bounded snapshots (up to their end when the query
//! starts) and materialized views as the tables their stores hold, so every query ends.
//!
//! Input is SQL statements ending with `;` (over several lines if need be) and backslash
//! commands ([`Command`]). A query prints its rows as they arrive in the chosen
//! [`OutputFormat`]; one that runs for more than a second shows its progress on a terminal,
//! and Ctrl-C cancels it without leaving the REPL. Errors print their message and, for
//! SQL, the line of the statement with a caret under the spot.

mod command;
mod describe;
mod functions;
mod helper;
mod output;
mod position;

pub use command::{COMMANDS_HELP, Command};
pub use helper::is_complete;
pub use output::{OutputFormat, ResultPrinter};

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use datafusion::physical_plan::execute_stream;
use futures::StreamExt;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};

use crate::error::{Error, Result};
use crate::pipeline::{Engine, Job, JobKind, rows_written};
use crate::sql::{PipelineStatement, SourceStatement, classify, read_sql_file, split_statements};
use helper::{Completions, ReplHelper};

/// How long a query runs before its progress is shown.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// An interactive session over one [`Engine`].
pub struct Repl {
    engine: Engine,
    format: OutputFormat,
    timing: bool,
    completions: Arc<RwLock<Completions>>,
    /// Progress of long queries on standard error, when it is a terminal.
    show_progress: bool,
    /// Stop at the first statement that fails (scripts: `-c`, `-f`).
    stop_on_error: bool,
}

/// What the REPL does after a piece of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

impl Repl {
    /// A REPL over `engine`, printing results in `format`.
    pub async fn new(engine: Engine, format: OutputFormat) -> Result<Self> {
        // Planning errors then carry where in the statement they are.
        engine
            .context()
            .sql("SET datafusion.sql_parser.collect_spans = true")
            .await?
            .collect()
            .await?;
        let repl = Self {
            engine,
            format,
            timing: false,
            completions: Arc::default(),
            show_progress: std::io::stderr().is_terminal(),
            stop_on_error: false,
        };
        repl.refresh_completions().await;
        Ok(repl)
    }

    /// The engine statements run in.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Makes the REPL stop at the first statement or command that fails, as a script should.
    pub fn stop_on_error(&mut self) {
        self.stop_on_error = true;
    }

    /// Runs the statements and commands of `text` in order, printing results and errors;
    /// returns whether all succeeded and whether `\q` was given.
    pub async fn run_text(&mut self, text: &str) -> (bool, Flow) {
        let mut ok = true;
        let mut sql = String::new();
        for line in text.lines() {
            if sql.trim().is_empty() && line.trim_start().starts_with('\\') {
                sql.clear();
                match self.command(line).await {
                    Ok(Flow::Quit) => return (ok, Flow::Quit),
                    Ok(Flow::Continue) => {}
                    Err(message) => {
                        eprintln!("error: {message}");
                        ok = false;
                    }
                }
            } else {
                sql.push_str(line);
                sql.push('\n');
                if is_complete(&sql) {
                    ok &= self.run_sql(&std::mem::take(&mut sql)).await;
                }
            }
            if !ok && self.stop_on_error {
                return (false, Flow::Continue);
            }
        }
        if !sql.trim().is_empty() {
            ok &= self.run_sql(&sql).await;
        }
        (ok, Flow::Continue)
    }

    /// Runs the statements of `sql`; stops at the first that fails.
    async fn run_sql(&mut self, sql: &str) -> bool {
        let statements = match split_statements(sql) {
            Ok(statements) => statements,
            Err(error) => {
                report(&error, sql);
                return false;
            }
        };
        for statement in statements {
            let started = Instant::now();
            let outcome = self.execute(&statement).await;
            if self.timing {
                println!("Time: {:.3} ms", started.elapsed().as_secs_f64() * 1e3);
            }
            if let Err(error) = outcome {
                report(&error, &statement.text);
                return false;
            }
        }
        self.refresh_completions().await;
        true
    }

    /// Runs one statement.
    async fn execute(&mut self, statement: &SourceStatement) -> Result<()> {
        let classified = classify(statement.clone())?;
        let tag = match &classified {
            PipelineStatement::CreateTable(_) => Some("CREATE TABLE"),
            PipelineStatement::Setup(_) => Some("OK"),
            _ => None,
        };
        let Some(job) = cancellable(self.engine.submit(classified)).await? else {
            if let Some(tag) = tag {
                println!("{tag}");
            }
            return Ok(());
        };
        match &job.kind {
            JobKind::Query => self.print_query(&job).await,
            JobKind::Insert => {
                let written = cancellable(self.engine.collect(&job)).await?;
                println!("INSERT {}", rows_written(&written));
                Ok(())
            }
            JobKind::View(name) | JobKind::Refresh(name) => {
                let written = cancellable(self.engine.collect(&job)).await?;
                println!("{name}: {} rows upserted", rows_written(&written));
                Ok(())
            }
        }
    }

    /// Runs a query, printing its rows as they come.
    async fn print_query(&self, job: &Job) -> Result<()> {
        let failed = |source| Error::Statement {
            line: job.line,
            source,
        };
        let context = self.engine.job_context();
        let mut printer = ResultPrinter::new(self.format, job.plan.schema());
        let rows = Arc::new(AtomicU64::new(0));
        let progress = self
            .show_progress
            .then(|| Progress::start(Arc::clone(&rows), Arc::clone(self.engine.shared())));
        let printed = cancellable(async {
            let mut stream =
                execute_stream(Arc::clone(&job.plan), Arc::clone(&context)).map_err(failed)?;
            let mut stdout = std::io::stdout();
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(failed)?;
                rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                let text = printer.batch(&batch).map_err(failed)?;
                if text.is_empty() {
                    continue;
                }
                if let Some(progress) = &progress {
                    progress.clear();
                }
                write_out(&mut stdout, &text)?;
            }
            Ok(())
        })
        .await;
        drop(progress);
        printed?;
        write_out(
            &mut std::io::stdout(),
            &printer.finish(rows.load(Ordering::Relaxed)),
        )
    }

    /// Runs a backslash command.
    async fn command(&mut self, line: &str) -> std::result::Result<Flow, String> {
        match Command::parse(line)? {
            Command::Quit => return Ok(Flow::Quit),
            Command::Commands => println!("{COMMANDS_HELP}"),
            Command::ListTables => print!("{}", describe::list_tables(&self.engine).await),
            Command::Describe(name) => print!("{}", describe::describe(&self.engine, &name).await?),
            Command::Help(name) => print!("{}", functions::help(&self.engine, name.as_deref())?),
            Command::Timing(on) => {
                self.timing = on.unwrap_or(!self.timing);
                println!("Timing is {}.", if self.timing { "on" } else { "off" });
            }
            Command::Format(format) => {
                self.format = format;
                println!("Output format is {format:?}.");
            }
            Command::Include(path) => {
                let text = read_sql_file(&path).map_err(|e| e.to_string())?;
                let (ok, flow) = Box::pin(self.run_text(&text)).await;
                if !ok {
                    return Err(format!("{} did not run to its end", path.display()));
                }
                return Ok(flow);
            }
        }
        Ok(Flow::Continue)
    }

    /// Reads input with line editing and history until `\q` or Ctrl-D.
    pub async fn interactive(mut self) -> Result<()> {
        let failed = |e: ReadlineError| Error::Io {
            context: "reading input".into(),
            source: std::io::Error::other(e),
        };
        let config = Config::builder().auto_add_history(false).build();
        let mut editor: Editor<ReplHelper, DefaultHistory> =
            Editor::with_config(config).map_err(failed)?;
        editor.set_helper(Some(ReplHelper::new(Arc::clone(&self.completions))));
        let history = history_path();
        if let Some(history) = &history {
            let _ = editor.load_history(history);
        }
        if std::io::stdin().is_terminal() {
            println!(
                "profusion {} — SQL ending with ';', \\? for help, \\q to quit",
                env!("CARGO_PKG_VERSION")
            );
        }
        loop {
            let (back, line) = tokio::task::spawn_blocking(move || {
                let line = editor.readline("profusion> ");
                (editor, line)
            })
            .await
            .map_err(|e| Error::Io {
                context: "reading input".into(),
                source: std::io::Error::other(e),
            })?;
            editor = back;
            match line {
                Ok(text) if text.trim().is_empty() => {}
                Ok(text) => {
                    let _ = editor.add_history_entry(text.as_str());
                    if self.run_text(&text).await.1 == Flow::Quit {
                        break;
                    }
                }
                // Ctrl-C at the prompt drops what was typed.
                Err(ReadlineError::Interrupted) => {}
                Err(ReadlineError::Eof) => break,
                Err(error) => return Err(failed(error)),
            }
        }
        if let Some(history) = &history {
            let _ = editor.save_history(history);
        }
        Ok(())
    }

    /// Reloads what Tab completes from the session.
    async fn refresh_completions(&self) {
        let mut names = self.engine.table_names();
        for table in names.clone() {
            if let Ok(provider) = self.engine.context().table_provider(table.as_str()).await {
                names.extend(provider.schema().fields().iter().map(|f| f.name().clone()));
            }
        }
        names.extend(functions::function_names(&self.engine));
        names.sort();
        names.dedup();
        match self.completions.write() {
            Ok(mut completions) => completions.names = names,
            Err(poisoned) => poisoned.into_inner().names = names,
        }
    }
}

/// `~/.profusion_history`, where the REPL keeps what was typed.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".profusion_history"))
}

/// Runs `work` unless Ctrl-C comes first; the work is then dropped, which cancels it.
async fn cancellable<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        done = work => done,
        _ = tokio::signal::ctrl_c() => Err(Error::Cancelled),
    }
}

fn write_out(out: &mut impl Write, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| Error::Io {
            context: "writing results".into(),
            source,
        })
}

/// Prints an error, with a caret under the spot in `statement` when it names one.
fn report(error: &Error, statement: &str) {
    eprintln!("error: {error}");
    if let Some((line, column)) = position::error_location(error)
        && let Some(caret) = position::caret(statement, line, column)
    {
        eprintln!("{caret}");
    }
}

/// The progress line of a running query on standard error: rows so far, time, events
/// read. Drawn from a second after the start; erased when dropped.
struct Progress {
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(rows: Arc<AtomicU64>, pipeline: Arc<crate::stream::PipelineContext>) -> Self {
        let started = Instant::now();
        let events_before = pipeline.metrics.events_in.get();
        let task = tokio::spawn(async move {
            tokio::time::sleep(PROGRESS_AFTER).await;
            let mut ticks = tokio::time::interval(Duration::from_millis(250));
            loop {
                ticks.tick().await;
                let events = pipeline.metrics.events_in.get() - events_before;
                eprint!(
                    "\r\x1b[K{} rows · {events} events read · {:.1}s · Ctrl-C cancels",
                    rows.load(Ordering::Relaxed),
                    started.elapsed().as_secs_f64()
                );
            }
        });
        Self { task }
    }

    /// Erases the line before results are printed.
    fn clear(&self) {
        eprint!("\r\x1b[K");
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
        self.clear();
    }
}
