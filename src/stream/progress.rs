//! Which source positions a job may commit: a position is settled once every row read
//! before it has had its effect on the sinks.
//!
//! Rows travel from a source to a sink within one pull of the plan, except where a stateful
//! operator keeps them: a window holds its rows until it is emitted. So each source split
//! keeps a ledger of the batches it handed on (the position after each, and the latest
//! event time in it), each stateful operator publishes an [`EventTimeHold`] (the earliest
//! event time it still needs), and a sink, once what it has received is durable, calls
//! [`JobProgress::settle`]: every batch whose rows are all older than every hold is settled.
//! Committing settled positions gives at-least-once delivery across restarts.
//!
//! A job that writes a profile view also measures its staleness: each source stream keeps
//! an arrivals ledger ([`JobProgress::arrivals`]) of when it read each batch, and settling
//! a batch records, in the view's histogram, how long ago it was read: the time from its
//! events' arrival to their upserts being readable, any window's wait included.
//!
//! The same progress carries the job's checkpointed state ([`JobState`]): the state its
//! operators registered, and the checkpoint on its way through the job with its barrier.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use datafusion::execution::TaskContext;

use super::{Histogram, JobState};

/// How long a finished job waits for its readers' last commits.
const FINAL_COMMIT_WAIT: Duration = Duration::from_secs(15);

/// No position settled yet.
const UNSETTLED: i64 = i64::MIN;

/// The earliest event time (nanoseconds) a stateful operator still needs; `i64::MAX`
/// while it holds nothing.
#[derive(Debug)]
pub struct EventTimeHold(AtomicI64);

impl EventTimeHold {
    /// Publishes what the operator holds now: `None` when nothing.
    pub fn set(&self, earliest: Option<i64>) {
        self.0
            .store(earliest.unwrap_or(i64::MAX), Ordering::Release);
    }

    /// Lowers the hold to `earliest` if that is earlier.
    pub fn lower(&self, earliest: i64) {
        self.0.fetch_min(earliest, Ordering::AcqRel);
    }

    fn get(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The batches one split (a Kafka partition) has handed on and not yet settled.
#[derive(Debug)]
pub struct SplitLedger {
    /// The split's name in checkpoints, e.g. `kafka:events/0`.
    id: String,
    /// The position after the last batch handed on.
    handed_on: AtomicI64,
    /// The batches handed on and not yet settled, oldest first.
    pending: Mutex<VecDeque<HandedOn>>,
    settled: AtomicI64,
    /// Set when the job has ended: nothing more will settle.
    finished: AtomicBool,
    /// Set by the split's reader once it has committed for the last time.
    closed: AtomicBool,
    /// Where the time from reading a batch to settling it is recorded: set for the
    /// arrivals ledger of a job that measures its view's staleness.
    staleness: Option<Histogram>,
}

/// A batch a split handed on.
#[derive(Debug)]
struct HandedOn {
    /// The split's position after the batch.
    position: i64,
    /// The latest event time among its rows.
    latest_event_time: Option<i64>,
    /// When it was handed on.
    at: Instant,
}

impl SplitLedger {
    fn new(id: String, staleness: Option<Histogram>) -> Self {
        Self {
            id,
            handed_on: AtomicI64::new(UNSETTLED),
            pending: Mutex::new(VecDeque::new()),
            settled: AtomicI64::new(UNSETTLED),
            finished: AtomicBool::new(false),
            // Only a split's reader commits; a ledger of arrivals has nothing to wait for.
            closed: AtomicBool::new(staleness.is_some()),
            staleness,
        }
    }

    /// Records a batch handed on to the plan: the split's position after it and the latest
    /// event time among its rows (`None` when the table has no event time).
    pub fn read(&self, position: i64, latest_event_time: Option<i64>) {
        lock(&self.pending).push_back(HandedOn {
            position,
            latest_event_time,
            at: Instant::now(),
        });
        self.handed_on.store(position, Ordering::Release);
    }

    /// The split's name in checkpoints.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The position after the last batch handed on, if any.
    pub fn handed_on(&self) -> Option<i64> {
        match self.handed_on.load(Ordering::Acquire) {
            UNSETTLED => None,
            position => Some(position),
        }
    }

    /// The position up to which every row has reached the sinks, if any.
    pub fn settled(&self) -> Option<i64> {
        match self.settled.load(Ordering::Acquire) {
            UNSETTLED => None,
            position => Some(position),
        }
    }

    /// True once the job has ended (its sinks have settled all they will).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Called by the split's reader when it will commit no more.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn settle(&self, frontier: i64) {
        let mut pending = lock(&self.pending);
        let mut settled = None;
        let now = Instant::now();
        while let Some(batch) = pending.front() {
            // Without an event time, a row is held by any operator that holds anything.
            let older = match batch.latest_event_time {
                Some(time) => time < frontier,
                None => frontier == i64::MAX,
            };
            if !older {
                break;
            }
            settled = Some(batch.position);
            if let Some(staleness) = &self.staleness {
                staleness.observe(now.saturating_duration_since(batch.at));
            }
            pending.pop_front();
        }
        if let Some(position) = settled {
            self.settled.store(position, Ordering::Release);
        }
    }
}

/// The progress of one job (one `INSERT` or query of a pipeline): its source ledgers and
/// its operators' holds. It travels in the job's task context.
#[derive(Debug, Default)]
pub struct JobProgress {
    ledgers: Mutex<Vec<Arc<SplitLedger>>>,
    holds: Mutex<Vec<Arc<EventTimeHold>>>,
    /// The staleness histogram of the view the job writes, if it measures one.
    staleness: OnceLock<Histogram>,
    /// The job's checkpointed state.
    pub state: JobState,
}

impl JobProgress {
    /// The progress of the job a task belongs to; `None` outside a pipeline job (a plain
    /// DataFusion session), where nothing is committed.
    pub fn of_task(task: &TaskContext) -> Option<Arc<JobProgress>> {
        task.session_config().get_extension::<JobProgress>()
    }

    /// Progress that resumes from a checkpoint of the same job.
    pub fn restoring(state: JobState) -> Self {
        Self {
            state,
            ..Self::default()
        }
    }

    /// A new ledger for the split named `id` (`kafka:events/0`); a second split of the
    /// same name in one job gets a numbered name.
    pub fn ledger(&self, id: &str) -> Arc<SplitLedger> {
        let mut ledgers = lock(&self.ledgers);
        let taken = ledgers
            .iter()
            .filter(|l| l.id.split('#').next() == Some(id))
            .count();
        let id = match taken {
            0 => id.to_string(),
            n => format!("{id}#{n}"),
        };
        let ledger = Arc::new(SplitLedger::new(id, None));
        ledgers.push(Arc::clone(&ledger));
        ledger
    }

    /// Has the job record its view's staleness in `histogram`; set before the job runs.
    pub fn measure_staleness(&self, histogram: Histogram) {
        let _ = self.staleness.set(histogram);
    }

    /// A ledger for a source stream to record when it hands each batch on, if the job
    /// measures staleness. It is settled with the job's other ledgers, never committed
    /// and never checkpointed.
    pub fn arrivals(&self) -> Option<Arc<SplitLedger>> {
        let staleness = self.staleness.get()?.clone();
        let ledger = Arc::new(SplitLedger::new("arrivals".into(), Some(staleness)));
        lock(&self.ledgers).push(Arc::clone(&ledger));
        Some(ledger)
    }

    /// A new hold for a stateful operator; it holds nothing until set.
    pub fn hold(&self) -> Arc<EventTimeHold> {
        let hold = Arc::new(EventTimeHold(AtomicI64::new(i64::MAX)));
        lock(&self.holds).push(Arc::clone(&hold));
        hold
    }

    /// Called by a sink once everything it has received is durable: settles each split's
    /// batches whose rows are older than every hold.
    pub fn settle(&self) {
        let frontier = lock(&self.holds)
            .iter()
            .map(|hold| hold.get())
            .min()
            .unwrap_or(i64::MAX);
        for ledger in lock(&self.ledgers).iter() {
            ledger.settle(frontier);
        }
        // Everything the sink received is durable: a checkpoint waiting for that is complete.
        self.state.sink_settled();
    }

    /// Marks the job of `task` ended, successfully or not, and waits (up to
    /// [`FINAL_COMMIT_WAIT`]) for its readers to commit what is settled. Call it once the
    /// job's plan has been dropped.
    pub async fn finish_task(task: &TaskContext) {
        let Some(progress) = Self::of_task(task) else {
            return;
        };
        let ledgers = lock(&progress.ledgers).clone();
        for ledger in &ledgers {
            ledger.finished.store(true, Ordering::Release);
        }
        let deadline = tokio::time::Instant::now() + FINAL_COMMIT_WAIT;
        while ledgers.iter().any(|l| !l.closed.load(Ordering::Acquire))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `task` for a side sink of the job (late rows): the same session, with progress of
    /// its own, so that what it settles neither settles the job's sink nor completes the
    /// job's checkpoints.
    pub fn detached(task: &TaskContext) -> Arc<TaskContext> {
        let config = task
            .session_config()
            .clone()
            .with_extension(Arc::new(JobProgress::default()));
        Arc::new(TaskContext::new(
            task.task_id(),
            task.session_id(),
            config,
            task.scalar_functions().clone(),
            task.higher_order_functions().clone(),
            task.aggregate_functions().clone(),
            task.window_functions().clone(),
            task.runtime_env(),
        ))
    }

    /// Settles the job of `task`, if it is a pipeline job.
    pub fn settle_task(task: &TaskContext) {
        if let Some(progress) = Self::of_task(task) {
            progress.settle();
        }
    }
}

/// Locks `mutex`; a panic elsewhere while holding it leaves plain data that is still valid.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_holds_everything_read_settles() {
        let progress = JobProgress::default();
        let ledger = progress.ledger("s");
        ledger.read(10, Some(5));
        ledger.read(20, None);
        assert_eq!(ledger.settled(), None);
        progress.settle();
        assert_eq!(ledger.settled(), Some(20));
    }

    #[test]
    fn a_hold_keeps_batches_with_newer_rows_and_everything_after_them() {
        let progress = JobProgress::default();
        let ledger = progress.ledger("s");
        let hold = progress.hold();
        ledger.read(10, Some(100));
        ledger.read(20, Some(300));
        ledger.read(30, Some(150));
        hold.set(Some(200));
        progress.settle();
        assert_eq!(ledger.settled(), Some(10));
        hold.set(Some(301));
        progress.settle();
        assert_eq!(ledger.settled(), Some(30));
    }

    #[test]
    fn rows_without_event_time_wait_for_every_hold_to_clear() {
        let progress = JobProgress::default();
        let ledger = progress.ledger("s");
        let hold = progress.hold();
        ledger.read(10, None);
        hold.set(Some(i64::MIN + 1));
        progress.settle();
        assert_eq!(ledger.settled(), None);
        hold.set(None);
        progress.settle();
        assert_eq!(ledger.settled(), Some(10));
    }
}
