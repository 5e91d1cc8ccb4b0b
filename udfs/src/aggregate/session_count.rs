//! `session_count(ts, gap)`: how many sessions a group's events form, a session being a run
//! of events each less than `gap` after the one before (as `SESSION` windows cut them). The
//! state is the sessions as (first, last) times, sorted and disjoint, so events arriving
//! out of order and partial states merge into the same answer.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use super::constants::{coerce_event_time, coerce_interval, duration_millis, event_millis};
use crate::docs::BEHAVIOUR;

/// The `session_count` aggregate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SessionCount {
    signature: Signature,
}

impl Default for SessionCount {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for SessionCount {
    fn name(&self) -> &str {
        "session_count"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [ts, gap] => Ok(vec![
                coerce_event_time(self.name(), ts)?,
                coerce_interval(self.name(), "gap", gap)?,
            ]),
            _ => plan_err!("session_count takes an event time and a gap"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = DataType::new_list(DataType::Int64, true);
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[firsts]", args.name),
                list.clone(),
                true,
            )),
            Arc::new(Field::new(format!("{}[lasts]", args.name), list, true)),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Sessions {
            gap: duration_millis(self.name(), "gap", &args.exprs[1])?,
            sessions: Vec::new(),
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// One group's sessions, sorted, each more than `gap` apart from the next.
#[derive(Debug)]
struct Sessions {
    gap: i64,
    sessions: Vec<(i64, i64)>,
}

impl Sessions {
    /// Adds the span `first..=last` of one event or session, merging what it now joins.
    fn add(&mut self, first: i64, last: i64) {
        let joins = |s: &(i64, i64)| {
            first.saturating_sub(s.1) < self.gap && s.0.saturating_sub(last) < self.gap
        };
        // The first session that ends within a gap before `first`, or later.
        let start = self
            .sessions
            .partition_point(|s| first.saturating_sub(s.1) >= self.gap);
        let mut end = start;
        let (mut merged_first, mut merged_last) = (first, last);
        while end < self.sessions.len() && joins(&self.sessions[end]) {
            merged_first = merged_first.min(self.sessions[end].0);
            merged_last = merged_last.max(self.sessions[end].1);
            end += 1;
        }
        self.sessions
            .splice(start..end, [(merged_first, merged_last)]);
    }

    fn lists(&self) -> (ScalarValue, ScalarValue) {
        let firsts: Vec<ScalarValue> = self
            .sessions
            .iter()
            .map(|s| ScalarValue::Int64(Some(s.0)))
            .collect();
        let lasts: Vec<ScalarValue> = self
            .sessions
            .iter()
            .map(|s| ScalarValue::Int64(Some(s.1)))
            .collect();
        (
            ScalarValue::List(ScalarValue::new_list_nullable(&firsts, &DataType::Int64)),
            ScalarValue::List(ScalarValue::new_list_nullable(&lasts, &DataType::Int64)),
        )
    }
}

impl Accumulator for Sessions {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let times = event_millis(&values[0])?;
        for ts in times.iter().flatten() {
            self.add(ts, ts);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.sessions.len() as i64)))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.sessions.capacity() * 16
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let (firsts, lasts) = self.lists();
        Ok(vec![firsts, lasts])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let firsts: &ListArray = states[0].as_list();
        let lasts: &ListArray = states[1].as_list();
        for row in 0..firsts.len() {
            if firsts.is_null(row) || lasts.is_null(row) {
                continue;
            }
            let (row_firsts, row_lasts) = (firsts.value(row), lasts.value(row));
            let (row_firsts, row_lasts) = (
                row_firsts.as_primitive::<Int64Type>(),
                row_lasts.as_primitive::<Int64Type>(),
            );
            for (first, last) in row_firsts.values().iter().zip(row_lasts.values().iter()) {
                self.add(*first, *last);
            }
        }
        Ok(())
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        BEHAVIOUR,
        "The number of sessions in a group: runs of events, each less than gap after the \
         one before (as SESSION windows cut them). Events may arrive in any order. 0 for no \
         events; rows with a NULL time are skipped.",
        "session_count(ts, gap)",
    )
    .with_sql_example(
        "```sql\n> SELECT user_id, session_count(ts, INTERVAL '30' MINUTE) AS sessions FROM events GROUP BY user_id;\n```",
    )
    .with_argument("ts", "The event time: a timestamp, or epoch milliseconds.")
    .with_argument("gap", "An INTERVAL constant: the inactivity that ends a session.")
    .build()
});

#[cfg(test)]
mod tests {
    use super::Sessions;

    #[test]
    fn out_of_order_events_join_sessions() {
        let mut sessions = Sessions {
            gap: 10,
            sessions: Vec::new(),
        };
        for ts in [0, 25, 5, 40, 15, 100, 49] {
            sessions.add(ts, ts);
        }
        // 0 5 | 15 | 25 | 40 49 | 100: a pause of exactly the gap starts a new session.
        assert_eq!(
            sessions.sessions,
            vec![(0, 5), (15, 15), (25, 25), (40, 49), (100, 100)]
        );
        sessions.add(20, 20);
        assert_eq!(
            sessions.sessions,
            vec![(0, 5), (15, 25), (40, 49), (100, 100)]
        );
    }
}
