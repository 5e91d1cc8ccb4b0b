//! Running a materialized view's job. A view over a stream drains like any continuous
//! job; a view over a bounded query runs once, then again on its `refresh` schedule and,
//! when it reads other views, whenever one of them changes (no sooner than
//! `'refresh.min_interval'` after the previous run started), until the pipeline stops or
//! nothing it reads can change any more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::view::ViewDefinition;
use super::{Engine, Job, JobKind, rows_written};
use crate::connector::store::UpstreamViews;
use crate::error::Result;
use crate::stream::{JobProgress, PipelineContext};

/// How often runs brought by upstream changes are summed up in the log.
const CHANGE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a view runs again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RunCause {
    /// The `refresh` schedule came round.
    Schedule,
    /// The named views it reads changed.
    Upstream(Vec<String>),
}

/// Runs a view's job (see the module header).
pub(super) async fn run_view(
    engine: &Engine,
    job: &Job,
    progress: Option<Arc<JobProgress>>,
) -> Result<()> {
    let Some((definition, Some(_))) = &job.view else {
        return engine.drain_with(job, progress, |_| Ok(())).await;
    };
    let definition = Arc::clone(definition);
    // A `REFRESH` runs once; the view's own job keeps it up to date.
    let mut upstream = match job.kind {
        JobKind::View(_) => definition.watch_upstream(),
        _ => UpstreamViews::new([]),
    };
    let mut log = RunLog::new(&definition.name);
    let mut job = job.clone();
    let mut cause = None;
    loop {
        let run = definition.runs.lock().await;
        upstream.mark_seen();
        let started = Instant::now();
        let batches = engine.collect_rows(&job).await?;
        let deleted = engine.finish_view_run(&job).await?;
        drop(run);
        log.run(
            cause.as_ref(),
            started.elapsed(),
            rows_written(&batches),
            deleted,
        );
        if !matches!(job.kind, JobKind::View(_)) {
            return Ok(());
        }
        cause = next_run(&definition, &mut upstream, started, engine.shared()).await;
        if cause.is_none() {
            log.flush();
            return Ok(());
        }
        job = engine.replan_view(&job).await?;
    }
}

/// Waits for the next run of a view over a bounded query; `None` when the pipeline stops,
/// or when the view has no schedule and nothing it reads can change any more.
async fn next_run(
    definition: &ViewDefinition,
    upstream: &mut UpstreamViews,
    last_started: Instant,
    shared: &PipelineContext,
) -> Option<RunCause> {
    let schedule = async {
        match definition.refresh {
            Some(every) => tokio::time::sleep(every).await,
            None => std::future::pending().await,
        }
    };
    let changed = async {
        match upstream.changed().await {
            Some(views) => {
                let earliest = last_started + definition.min_interval;
                tokio::time::sleep_until(earliest.into()).await;
                Some(views)
            }
            // The schedule may still bring runs.
            None if definition.refresh.is_some() => std::future::pending().await,
            None => None,
        }
    };
    tokio::select! {
        () = schedule => Some(RunCause::Schedule),
        views = changed => views.map(RunCause::Upstream),
        () = shared.stop.stopped() => None,
    }
}

/// The log of a view's runs: every run on start and on schedule, its rows and duration;
/// runs brought by upstream changes, which may come every second, summed up every
/// [`CHANGE_LOG_EVERY`].
struct RunLog<'a> {
    view: &'a str,
    /// Runs on upstream changes not yet logged: how many, rows written and deleted, time.
    pending: Option<ChangeRuns>,
}

struct ChangeRuns {
    since: Instant,
    runs: u64,
    written: u64,
    deleted: u64,
    busy: Duration,
    views: Vec<String>,
}

impl<'a> RunLog<'a> {
    fn new(view: &'a str) -> Self {
        Self {
            view,
            pending: None,
        }
    }

    fn run(&mut self, cause: Option<&RunCause>, took: Duration, written: u64, deleted: u64) {
        let Some(RunCause::Upstream(views)) = cause else {
            eprintln!(
                "view {}: refreshed in {:.3}s, {written} rows written, {deleted} rows of keys no longer returned deleted",
                self.view,
                took.as_secs_f64()
            );
            return;
        };
        let runs = self.pending.get_or_insert_with(|| ChangeRuns {
            since: Instant::now(),
            runs: 0,
            written: 0,
            deleted: 0,
            busy: Duration::ZERO,
            views: Vec::new(),
        });
        runs.runs += 1;
        runs.written += written;
        runs.deleted += deleted;
        runs.busy += took;
        for view in views {
            if !runs.views.contains(view) {
                runs.views.push(view.clone());
            }
        }
        if runs.since.elapsed() >= CHANGE_LOG_EVERY {
            self.flush();
        }
    }

    /// Logs the runs on upstream changes not logged yet.
    fn flush(&mut self) {
        if let Some(runs) = self.pending.take() {
            eprintln!(
                "view {}: {} runs on changes of {} in {:.1}s ({:.3}s running), {} rows written, {} rows of keys no longer returned deleted",
                self.view,
                runs.runs,
                runs.views.join(", "),
                runs.since.elapsed().as_secs_f64(),
                runs.busy.as_secs_f64(),
                runs.written,
                runs.deleted
            );
        }
    }
}
