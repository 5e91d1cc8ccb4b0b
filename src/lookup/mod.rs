//! Lookup joins: a stream joined with a bounded table (a file, a Parquet dataset, a
//! profile store) held in memory and read again every `'lookup.refresh'`.

mod exec;
mod index;
mod rule;

pub use exec::{JoinShape, LookupJoinExec, LookupKind, LookupTable};
pub use index::LookupIndex;
pub use rule::{LookupJoinRule, TableOfPlan};
