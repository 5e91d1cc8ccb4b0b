//! Field-level conflict policies, for a view fed by several sources.
//!
//! A materialized view whose query has no `GROUP BY` (typically a `UNION ALL` of sources,
//! each giving some fields of a key) is a stream of partial updates. The view keeps one
//! row per key and, for each field, the value its policy picks among the updates that set
//! it (a NULL sets nothing, so a source that does not know a field leaves it alone):
//!
//! - `event_time` (the default): the latest by the event-time column (`'conflict.time'`,
//!   or the query's only timestamp column);
//! - `priority`: the one from the highest-priority source (`'conflict.source'` names the
//!   column saying where a row came from, `'conflict.priority'` lists sources highest
//!   first; unlisted sources rank below them), the latest by event time within a source;
//! - `version`: the one with the highest version (`'conflict.version'` names the column).
//!
//! `'conflict.policy'` sets the policy of every field, `'conflict.policy.<field>'` one
//! field's. The merge is planned as a `GROUP BY` of the key with one
//! `last_value(field ORDER BY …) FILTER (WHERE field IS NOT NULL)` per field, so it is an
//! upsert aggregate like any other view: versioned, checkpointed, expired by `'state.ttl'`.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::logical_expr::LogicalPlan;

use crate::error::{Error, Result};
use crate::sql::WithOptions;
use crate::sql::quote;

/// How one field picks its value among a key's updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// The latest by event time.
    EventTime,
    /// The one from the highest-priority source.
    Priority,
    /// The one with the highest version.
    Version,
}

const POLICIES: [(&str, ConflictPolicy); 3] = [
    ("event_time", ConflictPolicy::EventTime),
    ("priority", ConflictPolicy::Priority),
    ("version", ConflictPolicy::Version),
];

/// A view's conflict policies, as its `conflict.*` options declare them.
#[derive(Debug, Clone)]
pub struct ConflictPolicies {
    default: ConflictPolicy,
    fields: BTreeMap<String, ConflictPolicy>,
    time: Option<String>,
    source: Option<String>,
    priority: Vec<String>,
    version: Option<String>,
}

impl Default for ConflictPolicies {
    fn default() -> Self {
        Self {
            default: ConflictPolicy::EventTime,
            fields: BTreeMap::new(),
            time: None,
            source: None,
            priority: Vec::new(),
            version: None,
        }
    }
}

impl ConflictPolicies {
    /// Consumes the `conflict.*` options; `None` when there are none.
    pub fn parse(options: &mut WithOptions) -> Result<Option<Self>> {
        let default = options.choice("conflict.policy", &POLICIES)?;
        let mut fields = BTreeMap::new();
        for (field, raw) in options.take_prefixed("conflict.policy.") {
            let policy = POLICIES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(raw.trim()))
                .map(|(_, policy)| *policy)
                .ok_or_else(|| {
                    options.error(format!(
                        "option 'conflict.policy.{field}' has a bad value '{raw}': expected one of \
                         event_time, priority, version"
                    ))
                })?;
            fields.insert(field, policy);
        }
        let time = options.take("conflict.time");
        let source = options.take("conflict.source");
        let priority: Vec<String> = options
            .take("conflict.priority")
            .map(|list| {
                list.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let version = options.take("conflict.version");
        let declared = default.is_some()
            || !fields.is_empty()
            || time.is_some()
            || source.is_some()
            || !priority.is_empty()
            || version.is_some();
        Ok(declared.then(|| Self {
            default: default.unwrap_or(ConflictPolicy::EventTime),
            fields,
            time,
            source,
            priority,
            version,
        }))
    }

    /// The query that merges the updates of `query` (whose columns are `schema`) into one
    /// row per `primary_key`, each other field by its policy. `error` words a problem with
    /// the options.
    pub fn merge_query(
        &self,
        query: &str,
        schema: &Schema,
        primary_key: &[String],
        error: impl Fn(String) -> Error,
    ) -> Result<String> {
        let column = |option: &str, name: &str| -> Result<String> {
            schema
                .field_with_name(name)
                .map(|f| f.name().clone())
                .map_err(|_| {
                    error(format!(
                        "option '{option}' names '{name}', which is not a column of the query \
                         (columns: {})",
                        column_names(schema)
                    ))
                })
        };
        for field in self.fields.keys() {
            column(&format!("conflict.policy.{field}"), field)?;
            if primary_key.contains(field) {
                return Err(error(format!(
                    "option 'conflict.policy.{field}': '{field}' is part of the primary key, \
                     which identifies the row and has no conflicts"
                )));
            }
        }
        let merged: Vec<(&str, ConflictPolicy)> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|name| !primary_key.iter().any(|k| k == name))
            .map(|name| (name, self.fields.get(name).copied().unwrap_or(self.default)))
            .collect();
        let uses = |policy| merged.iter().any(|(_, p)| *p == policy);
        let unused = |options: &str, policies: &str| {
            error(format!("{options} set, but no field uses {policies}"))
        };

        let time = if uses(ConflictPolicy::EventTime) || uses(ConflictPolicy::Priority) {
            Some(match &self.time {
                Some(name) => column("conflict.time", name)?,
                None => only_timestamp(schema).map_err(&error)?,
            })
        } else if self.time.is_some() {
            return Err(unused(
                "option 'conflict.time' is",
                "the 'event_time' or 'priority' policy",
            ));
        } else {
            None
        };
        let rank = if uses(ConflictPolicy::Priority) {
            let Some(source) = &self.source else {
                return Err(error(
                    "the 'priority' policy needs 'conflict.source' (the column naming each \
                     row's source) and 'conflict.priority' (the sources, highest first)"
                        .into(),
                ));
            };
            if self.priority.is_empty() {
                return Err(error(
                    "the 'priority' policy needs 'conflict.priority' (the sources, highest first)"
                        .into(),
                ));
            }
            let source = quote(&column("conflict.source", source)?);
            let ranks: Vec<String> = self
                .priority
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    format!(
                        "WHEN '{}' THEN {}",
                        name.replace('\'', "''"),
                        self.priority.len() - i
                    )
                })
                .collect();
            Some(format!("CASE {source} {} ELSE 0 END", ranks.join(" ")))
        } else if self.source.is_some() || !self.priority.is_empty() {
            return Err(unused(
                "options 'conflict.source' and 'conflict.priority' are",
                "the 'priority' policy",
            ));
        } else {
            None
        };
        let version = if uses(ConflictPolicy::Version) {
            let Some(name) = &self.version else {
                return Err(error(
                    "the 'version' policy needs 'conflict.version' (the version column)".into(),
                ));
            };
            Some(column("conflict.version", name)?)
        } else if self.version.is_some() {
            return Err(unused(
                "option 'conflict.version' is",
                "the 'version' policy",
            ));
        } else {
            None
        };

        let latest = |name: &str| format!("{} ASC NULLS FIRST", quote(name));
        let select: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| {
                let name = f.name();
                let Some((_, policy)) = merged.iter().find(|(n, _)| n == name) else {
                    return quote(name);
                };
                let order = match policy {
                    ConflictPolicy::EventTime => latest(time.as_deref().unwrap_or_default()),
                    ConflictPolicy::Priority => format!(
                        "{}, {}",
                        rank.as_deref().unwrap_or_default(),
                        latest(time.as_deref().unwrap_or_default())
                    ),
                    ConflictPolicy::Version => latest(version.as_deref().unwrap_or_default()),
                };
                let field = quote(name);
                format!(
                    "last_value({field} ORDER BY {order}) FILTER (WHERE {field} IS NOT NULL) AS {field}"
                )
            })
            .collect();
        let keys: Vec<String> = primary_key.iter().map(|k| quote(k)).collect();
        Ok(format!(
            "SELECT {} FROM ({query}) AS updates GROUP BY {}",
            select.join(", "),
            keys.join(", ")
        ))
    }
}

/// True when `plan` ends in a grouping (`GROUP BY`, `DISTINCT`): a view over it already
/// has one row per key.
pub fn is_grouped(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) => true,
        LogicalPlan::Projection(p) => is_grouped(&p.input),
        LogicalPlan::SubqueryAlias(a) => is_grouped(&a.input),
        LogicalPlan::Sort(s) => is_grouped(&s.input),
        LogicalPlan::Filter(f) => is_grouped(&f.input),
        _ => false,
    }
}

/// The one timestamp column of `schema`, the event time when `'conflict.time'` is unset.
fn only_timestamp(schema: &Schema) -> std::result::Result<String, String> {
    let timestamps: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::Timestamp(..)))
        .map(|f| f.name().as_str())
        .collect();
    match timestamps.as_slice() {
        [only] => Ok(only.to_string()),
        [] => Err(format!(
            "a view without GROUP BY merges its rows as updates of their key, by default the \
             latest by event time, and the query has no timestamp column: name one with \
             'conflict.time', or GROUP BY the primary key (columns: {})",
            column_names(schema)
        )),
        several => Err(format!(
            "the query has several timestamp columns ({}): name the event time with \
             'conflict.time'",
            several.join(", ")
        )),
    }
}

fn column_names(schema: &Schema) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    names.join(", ")
}
