//! [`TimeBound`]: the time bound of an interval join, read from its `ON` condition:
//! `c.ts BETWEEN i.ts AND i.ts + INTERVAL '30' MINUTE`, or a pair of `>`/`<` comparisons,
//! gives how far the right row's time may lie from the left row's. It is what lets the
//! join forget a row once the other side's watermark has passed every time it could match.
//! A join of two windowed aggregations on their windows' ends is the same with a bound of
//! zero: a window join. The upper end may be a column of the left row instead of its time
//! (`b.ts BETWEEN a.ts AND a.expires`): each left row is then kept until its own end.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::{JoinSide, ScalarValue};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal};
use datafusion::physical_expr::{PhysicalExprRef, split_conjunction};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::utils::JoinFilter;

use crate::stream::DisplayNanos;

/// `right.time - left.time` lies in `[lower, upper]` (nanoseconds) for every joined pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBound {
    /// The time column's index in the left input; `None` when the input does not carry it
    /// (a `'state.ttl'` join whose query does not select it): rows then count as of the
    /// input's watermark when they arrive.
    pub left_time: Option<usize>,
    /// The time column's index in the right input, likewise.
    pub right_time: Option<usize>,
    pub lower: i64,
    pub upper: i64,
    /// A left column that the upper end counts from instead of the left time:
    /// `right.time <= left[left_end] + upper`.
    pub left_end: Option<usize>,
    /// True when the join checks the bound itself: it comes from the inputs' `'state.ttl'`,
    /// not from the `ON` condition.
    pub checked: bool,
}

/// Whether column `index` of a plan is the end (or time) of windows a windowed
/// aggregation closed: the key of a window join.
pub type WindowEndOf = Arc<dyn Fn(&Arc<dyn ExecutionPlan>, usize) -> bool + Send + Sync>;

/// How long one input of a join without a time bound keeps its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRetention {
    /// The input's column that carries its event time, when the query keeps it.
    pub time_column: Option<usize>,
    /// The table's `'state.ttl'`, if it sets one.
    pub ttl_nanos: Option<i64>,
    /// The input's columns that are the table's columns other than its event time.
    pub other_columns: Vec<usize>,
}

impl TimeBound {
    /// The bound the conjuncts of `filter` put on a pair of time columns, when they bound
    /// it on both sides.
    pub fn from_filter(filter: &JoinFilter) -> Option<Self> {
        let mut lower: Option<(usize, usize, i64)> = None;
        let mut upper: Option<(usize, usize, i64)> = None;
        for conjunct in split_conjunction(filter.expression()) {
            let Some(comparison) = Comparison::of(conjunct.as_ref(), filter) else {
                continue;
            };
            let columns = (comparison.left_time, comparison.right_time);
            match comparison.bound {
                Bound::AtLeast(value) => {
                    if lower.is_none_or(|(l, r, v)| (l, r) == columns && value > v) {
                        lower = Some((columns.0, columns.1, value));
                    }
                }
                Bound::AtMost(value) => {
                    if upper.is_none_or(|(l, r, v)| (l, r) == columns && value < v) {
                        upper = Some((columns.0, columns.1, value));
                    }
                }
            }
        }
        let ((left_time, right_time, lower), (l, r, upper)) = (lower?, upper?);
        if r != right_time {
            return None;
        }
        // A bound from the left row's own time, or up to another of its columns.
        let left_end = (l != left_time).then_some(l);
        (left_end.is_some() || lower <= upper).then_some(Self {
            left_time: Some(left_time),
            right_time: Some(right_time),
            lower,
            upper,
            left_end,
            checked: false,
        })
    }
}

impl TimeBound {
    /// The zero-width bound of a window join: an equi-key pair of window ends (or window
    /// times) of windowed aggregations, under any names the query gives them.
    pub fn from_window_keys(
        on: &[(PhysicalExprRef, PhysicalExprRef)],
        left: &Arc<dyn ExecutionPlan>,
        right: &Arc<dyn ExecutionPlan>,
        is_window_end: &WindowEndOf,
    ) -> Option<Self> {
        on.iter().find_map(|(l, r)| {
            let left_time = l.downcast_ref::<Column>()?.index();
            let right_time = r.downcast_ref::<Column>()?.index();
            (is_window_end(left, left_time) && is_window_end(right, right_time)).then_some(Self {
                left_time: Some(left_time),
                right_time: Some(right_time),
                lower: 0,
                upper: 0,
                left_end: None,
                checked: false,
            })
        })
    }

    /// The bound the inputs' `'state.ttl'` sets: a left row is kept, and matches, for the
    /// left ttl after its time, a right row for the right ttl after its. An input without
    /// a ttl takes the other's.
    pub fn from_retention(
        left: Option<&InputRetention>,
        right: Option<&InputRetention>,
    ) -> Option<Self> {
        let (left, right) = (left?, right?);
        let (upper, lower) = (
            left.ttl_nanos.or(right.ttl_nanos)?,
            right.ttl_nanos.or(left.ttl_nanos)?,
        );
        Some(Self {
            left_time: left.time_column,
            right_time: right.time_column,
            lower: lower.saturating_neg(),
            upper,
            left_end: None,
            checked: true,
        })
    }

    /// Whether each pair of times (left, right) lies within the bound.
    pub fn contains(&self, left: &[i64], right: &[i64]) -> Vec<bool> {
        left.iter()
            .zip(right)
            .map(|(&l, &r)| {
                let distance = r.saturating_sub(l);
                self.lower <= distance && distance <= self.upper
            })
            .collect()
    }
}

impl TimeBound {
    /// The bound as `EXPLAIN` shows it, naming a left end column from `left`'s schema.
    pub fn display_with<'a>(&'a self, left: &'a Schema) -> impl fmt::Display + 'a {
        Described {
            bound: self,
            left_end: self
                .left_end
                .and_then(|end| left.fields().get(end))
                .map(|field| field.name().as_str()),
        }
    }
}

impl fmt::Display for TimeBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Described {
            bound: self,
            left_end: None,
        }
        .fmt(f)
    }
}

/// A bound with the name of its left end column, when it has one.
struct Described<'a> {
    bound: &'a TimeBound,
    left_end: Option<&'a str>,
}

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bound = self.bound;
        let signed = |v: i64| match v < 0 {
            true => format!("-{}", DisplayNanos(v.saturating_neg())),
            false => DisplayNanos(v).to_string(),
        };
        match bound.left_end {
            None => write!(
                f,
                "right - left in [{}, {}]",
                signed(bound.lower),
                signed(bound.upper)
            )?,
            Some(end) => write!(
                f,
                "right - left >= {}, right - left.{} <= {}",
                signed(bound.lower),
                self.left_end
                    .map_or_else(|| format!("column{end}"), str::to_string),
                signed(bound.upper)
            )?,
        }
        if bound.checked {
            match (bound.left_time, bound.right_time) {
                (Some(_), Some(_)) => write!(f, " (state.ttl)")?,
                _ => write!(f, " (state.ttl, rows timed by their arrival)")?,
            }
        }
        Ok(())
    }
}

enum Bound {
    AtLeast(i64),
    AtMost(i64),
}

/// One conjunct `right.time - left.time <op> constant`.
struct Comparison {
    left_time: usize,
    right_time: usize,
    bound: Bound,
}

impl Comparison {
    fn of(expr: &dyn PhysicalExpr, filter: &JoinFilter) -> Option<Self> {
        let binary = expr.downcast_ref::<BinaryExpr>()?;
        let a = Term::of(binary.left().as_ref(), filter)?;
        let b = Term::of(binary.right().as_ref(), filter)?;
        // a.time + a.offset <op> b.time + b.offset, with the right side's time first.
        let (right, left, op) = match (a.side, b.side) {
            (JoinSide::Right, JoinSide::Left) => (a, b, *binary.op()),
            (JoinSide::Left, JoinSide::Right) => (b, a, binary.op().swap()?),
            _ => return None,
        };
        // right.time <op> left.time + (left.offset - right.offset)
        let constant = left.offset.checked_sub(right.offset)?;
        let bound = match op {
            Operator::GtEq => Bound::AtLeast(constant),
            Operator::Gt => Bound::AtLeast(constant.checked_add(1)?),
            Operator::LtEq => Bound::AtMost(constant),
            Operator::Lt => Bound::AtMost(constant.checked_sub(1)?),
            _ => return None,
        };
        Some(Self {
            left_time: left.column,
            right_time: right.column,
            bound,
        })
    }
}

/// A time column of one input plus a constant: `i.ts + INTERVAL '30' MINUTE`.
struct Term {
    side: JoinSide,
    column: usize,
    offset: i64,
}

impl Term {
    fn of(expr: &dyn PhysicalExpr, filter: &JoinFilter) -> Option<Self> {
        if let Some(column) = expr.downcast_ref::<Column>() {
            let index = filter.column_indices().get(column.index())?;
            return Some(Self {
                side: index.side,
                column: index.index,
                offset: 0,
            });
        }
        if let Some(cast) = expr.downcast_ref::<CastExpr>() {
            return Self::of(cast.expr().as_ref(), filter);
        }
        let binary = expr.downcast_ref::<BinaryExpr>()?;
        let (term, nanos) = match (
            Self::of(binary.left().as_ref(), filter),
            literal_nanos(binary.right().as_ref()),
        ) {
            (Some(term), Some(nanos)) => (term, nanos),
            _ if *binary.op() == Operator::Plus => (
                Self::of(binary.right().as_ref(), filter)?,
                literal_nanos(binary.left().as_ref())?,
            ),
            _ => return None,
        };
        let offset = match binary.op() {
            Operator::Plus => term.offset.checked_add(nanos)?,
            Operator::Minus => term.offset.checked_sub(nanos)?,
            _ => return None,
        };
        Some(Self { offset, ..term })
    }
}

/// An interval or duration literal in nanoseconds; months are not a fixed length.
fn literal_nanos(expr: &dyn PhysicalExpr) -> Option<i64> {
    const DAY: i64 = 86_400_000_000_000;
    let literal = expr.downcast_ref::<Literal>()?;
    match literal.value() {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            (v.days as i64).checked_mul(DAY)?.checked_add(v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => (v.days as i64)
            .checked_mul(DAY)?
            .checked_add((v.milliseconds as i64).checked_mul(1_000_000)?),
        ScalarValue::DurationNanosecond(Some(v)) => Some(*v),
        ScalarValue::DurationMicrosecond(Some(v)) => v.checked_mul(1_000),
        ScalarValue::DurationMillisecond(Some(v)) => v.checked_mul(1_000_000),
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}
