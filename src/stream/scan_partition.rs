//! [`ScanPartition`]: one partition of a source scan, as a source's `open` sees it: which
//! share of the source's splits it reads, and the ledgers of the splits it opened, whose
//! positions go into a checkpoint when the partition puts a barrier in, and the counts of
//! the table it reads (records read, bad records), which a source's readers add to.

use std::sync::{Arc, Mutex};

use datafusion::execution::TaskContext;

use super::{JobProgress, PipelineContext, SplitLedger, TableCounts, lock};

/// Partition `index` of a source scan of `count` partitions, within a job or not.
#[derive(Debug)]
pub struct ScanPartition {
    pub index: usize,
    pub count: usize,
    job: Option<Arc<JobProgress>>,
    /// The number of the scan among the job's scans (`source-1` is 1): a split read by two
    /// scans of one job (a table joined with itself) has a ledger for each.
    scan: usize,
    ledgers: Mutex<Vec<Arc<SplitLedger>>>,
    /// The counts of the table read.
    pub counts: TableCounts,
}

impl ScanPartition {
    /// Partition `index` of `count` of a scan of the table named `table` run in `context`.
    pub fn new(index: usize, count: usize, table: &str, context: &TaskContext) -> Self {
        Self {
            index,
            count,
            job: JobProgress::of_task(context),
            scan: 0,
            ledgers: Mutex::new(Vec::new()),
            counts: PipelineContext::of_task(context).metrics.table(table),
        }
    }

    /// This partition of the scan whose state is checkpointed as `name` (`source-1/0-of-2`).
    pub fn of_scan(mut self, name: &str) -> Self {
        self.scan = name
            .split('/')
            .next()
            .and_then(|operator| operator.rsplit('-').next())
            .and_then(|number| number.parse().ok())
            .unwrap_or(0);
        self
    }

    /// True when the split numbered `split` (of a source's fixed list) is this partition's
    /// to read: splits are dealt out in turn.
    pub fn reads(&self, split: usize) -> bool {
        split % self.count == self.index
    }

    /// A ledger for the split named `id` (`kafka:events/0`; `kafka:events/0#1` when the
    /// job's second scan reads it), to record what it hands on; `None` outside a pipeline
    /// job, where nothing is recorded.
    pub fn ledger(&self, id: &str) -> Option<Arc<SplitLedger>> {
        let id = match self.scan {
            0 => id.to_string(),
            scan => format!("{id}#{scan}"),
        };
        let ledger = self.job.as_ref()?.ledger(&id);
        lock(&self.ledgers).push(Arc::clone(&ledger));
        Some(ledger)
    }

    /// Where a restored job resumes the split of `ledger`, if it was checkpointed.
    pub fn restored_position(&self, ledger: &SplitLedger) -> Option<i64> {
        self.job.as_ref()?.state.restored_position(ledger.id())
    }

    /// Where each split this partition opened has handed on up to.
    pub fn positions(&self) -> Vec<(String, i64)> {
        lock(&self.ledgers)
            .iter()
            .filter_map(|l| l.handed_on().map(|p| (l.id().to_string(), p)))
            .collect()
    }
}
