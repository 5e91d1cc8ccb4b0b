//! `decayed_count(ts, half_life)` and `decayed_sum(x, ts, half_life)`: engagement that
//! counts recent events more, each event weighing `2^(-(latest - ts) / half_life)` where
//! `latest` is the group's latest event time. The state is that latest time and the
//! weighted sum as of it, so partial states merge exactly in any order (forward decay),
//! and a checkpoint holds two numbers per group.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator, Signature, Volatility,
};

use super::constants::{coerce_event_time, coerce_interval, duration_millis, event_millis, passes};
use crate::docs::BEHAVIOUR;

/// Which of the two functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decayed {
    /// `decayed_count(ts, half_life)`: each event weighs 1 before decay.
    Count,
    /// `decayed_sum(x, ts, half_life)`: each event weighs x before decay.
    Sum,
}

/// The `decayed_count` or `decayed_sum` aggregate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DecayedAggregate {
    kind: Decayed,
    signature: Signature,
}

impl DecayedAggregate {
    /// The aggregate of `kind`.
    pub fn new(kind: Decayed) -> Self {
        Self {
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// (value column, time column, half-life column) positions.
    fn positions(&self) -> (Option<usize>, usize, usize) {
        match self.kind {
            Decayed::Count => (None, 0, 1),
            Decayed::Sum => (Some(0), 1, 2),
        }
    }

    fn half_life(&self, args: &AccumulatorArgs) -> Result<f64> {
        let (_, _, at) = self.positions();
        Ok(duration_millis(self.name(), "half-life", &args.exprs[at])? as f64)
    }
}

impl AggregateUDFImpl for DecayedAggregate {
    fn name(&self) -> &str {
        match self.kind {
            Decayed::Count => "decayed_count",
            Decayed::Sum => "decayed_sum",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        match (self.kind, arg_types) {
            (Decayed::Count, [ts, half_life]) => Ok(vec![
                coerce_event_time(name, ts)?,
                coerce_interval(name, "half-life", half_life)?,
            ]),
            (Decayed::Sum, [x, ts, half_life]) => {
                if !(x.is_numeric() || x == &DataType::Null) {
                    return plan_err!("decayed_sum: the value must be numeric, not {x}");
                }
                Ok(vec![
                    DataType::Float64,
                    coerce_event_time(name, ts)?,
                    coerce_interval(name, "half-life", half_life)?,
                ])
            }
            (Decayed::Count, _) => plan_err!("decayed_count takes an event time and a half-life"),
            (Decayed::Sum, _) => {
                plan_err!("decayed_sum takes a value, an event time and a half-life")
            }
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[latest]", args.name),
                DataType::Int64,
                true,
            )),
            Arc::new(Field::new(
                format!("{}[value]", args.name),
                DataType::Float64,
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(DecayedAccumulator {
            groups: self.groups(&args)?,
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.groups(&args)?))
    }

    fn documentation(&self) -> Option<&Documentation> {
        match self.kind {
            Decayed::Count => Some(&COUNT_DOC),
            Decayed::Sum => Some(&SUM_DOC),
        }
    }
}

impl DecayedAggregate {
    fn groups(&self, args: &AccumulatorArgs) -> Result<DecayedGroups> {
        let (value, time, _) = self.positions();
        Ok(DecayedGroups {
            half_life: self.half_life(args)?,
            value_column: value,
            time_column: time,
            latest: Vec::new(),
            sums: Vec::new(),
            is_sum: self.kind == Decayed::Sum,
        })
    }
}

/// No event yet.
const NONE: i64 = i64::MIN;

/// Latest event time and decayed sum per group.
#[derive(Debug)]
struct DecayedGroups {
    half_life: f64,
    value_column: Option<usize>,
    time_column: usize,
    latest: Vec<i64>,
    sums: Vec<f64>,
    is_sum: bool,
}

impl DecayedGroups {
    /// Adds `weight` at time `ts` to group `group`.
    #[inline]
    fn add(&mut self, group: usize, ts: i64, weight: f64) {
        let latest = self.latest[group];
        if latest == NONE {
            self.latest[group] = ts;
            self.sums[group] = weight;
        } else if ts > latest {
            self.sums[group] =
                self.sums[group] * decay((ts - latest) as f64, self.half_life) + weight;
            self.latest[group] = ts;
        } else {
            self.sums[group] += weight * decay((latest - ts) as f64, self.half_life);
        }
    }

    fn resize(&mut self, groups: usize) {
        self.latest.resize(groups, NONE);
        self.sums.resize(groups, 0.0);
    }

    fn results(&self, latest: &[i64], sums: Vec<f64>) -> Float64Array {
        if self.is_sum {
            sums.into_iter()
                .zip(latest)
                .map(|(s, &l)| (l != NONE).then_some(s))
                .collect()
        } else {
            Float64Array::from(sums)
        }
    }
}

/// `2^(-age / half_life)`.
#[inline]
fn decay(age: f64, half_life: f64) -> f64 {
    (-age / half_life * std::f64::consts::LN_2).exp()
}

impl GroupsAccumulator for DecayedGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let times = event_millis(&values[self.time_column])?;
        let weights = self
            .value_column
            .map(|c| values[c].as_primitive::<Float64Type>().clone());
        for (row, &group) in group_indices.iter().enumerate() {
            if times.is_null(row) || !passes(opt_filter, row) {
                continue;
            }
            let weight = match &weights {
                Some(w) if w.is_null(row) => continue,
                Some(w) => w.value(row),
                None => 1.0,
            };
            self.add(group, times.value(row), weight);
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let latest = emit_to.take_needed(&mut self.latest);
        let sums = emit_to.take_needed(&mut self.sums);
        Ok(Arc::new(self.results(&latest, sums)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let latest = emit_to.take_needed(&mut self.latest);
        let sums = emit_to.take_needed(&mut self.sums);
        let latest: Int64Array = latest
            .into_iter()
            .map(|l| (l != NONE).then_some(l))
            .collect();
        Ok(vec![Arc::new(latest), Arc::new(Float64Array::from(sums))])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let latest = values[0].as_primitive::<Int64Type>();
        let sums = values[1].as_primitive::<Float64Type>();
        for (row, &group) in group_indices.iter().enumerate() {
            if latest.is_valid(row) {
                self.add(group, latest.value(row), sums.value(row));
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let times = event_millis(&values[self.time_column])?;
        let weights = self
            .value_column
            .map(|c| values[c].as_primitive::<Float64Type>().clone());
        let mut latest = Vec::with_capacity(times.len());
        let mut sums = Vec::with_capacity(times.len());
        for row in 0..times.len() {
            let weight = match &weights {
                Some(w) if w.is_null(row) => None,
                Some(w) => Some(w.value(row)),
                None => Some(1.0),
            };
            let counted = times.is_valid(row) && passes(opt_filter, row) && weight.is_some();
            latest.push(counted.then(|| times.value(row)));
            sums.push(if counted { weight.unwrap_or(0.0) } else { 0.0 });
        }
        Ok(vec![
            Arc::new(Int64Array::from(latest)),
            Arc::new(Float64Array::from(sums)),
        ])
    }

    fn size(&self) -> usize {
        self.latest.capacity() * 8 + self.sums.capacity() * 8 + std::mem::size_of::<Self>()
    }
}

/// The one-group form, for plans that aggregate without grouping.
#[derive(Debug)]
struct DecayedAccumulator {
    groups: DecayedGroups,
}

impl DecayedAccumulator {
    fn single(&self, values: &[ArrayRef]) -> Vec<usize> {
        vec![0; values.first().map_or(0, |v| v.len())]
    }
}

impl Accumulator for DecayedAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let groups = self.single(values);
        self.groups.update_batch(values, &groups, None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.groups.resize(1);
        let result = self
            .groups
            .results(&self.groups.latest, self.groups.sums.clone());
        ScalarValue::try_from_array(&result, 0)
    }

    fn size(&self) -> usize {
        self.groups.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.groups.resize(1);
        let latest = self.groups.latest[0];
        Ok(vec![
            ScalarValue::Int64((latest != NONE).then_some(latest)),
            ScalarValue::Float64(Some(self.groups.sums[0])),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let groups = self.single(states);
        self.groups.merge_batch(states, &groups, 1)
    }
}

static COUNT_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        BEHAVIOUR,
        "A recency-weighted count of events: each event counts 2^(-(latest - ts) / \
         half_life), where latest is the group's latest event time, so an event one \
         half-life older than the latest counts one half. 0 for no events.",
        "decayed_count(ts, half_life)",
    )
    .with_sql_example(
        "```sql\n> SELECT user_id, decayed_count(ts, INTERVAL '7' DAY) AS engagement FROM events GROUP BY user_id;\n```",
    )
    .with_argument("ts", "The event time: a timestamp, or epoch milliseconds.")
    .with_argument("half_life", "An INTERVAL constant, such as INTERVAL '7' DAY.")
    .with_related_udf("decayed_sum")
    .build()
});

static SUM_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        BEHAVIOUR,
        "A recency-weighted sum: each value counts x * 2^(-(latest - ts) / half_life), where \
         latest is the group's latest event time. Rows with a NULL value or time are \
         skipped; NULL for no rows.",
        "decayed_sum(x, ts, half_life)",
    )
    .with_sql_example(
        "```sql\n> SELECT user_id, decayed_sum(amount, ts, INTERVAL '30' DAY) AS recent_spend FROM orders GROUP BY user_id;\n```",
    )
    .with_argument("x", "A numeric value.")
    .with_argument("ts", "The event time: a timestamp, or epoch milliseconds.")
    .with_argument("half_life", "An INTERVAL constant, such as INTERVAL '30' DAY.")
    .with_related_udf("decayed_count")
    .build()
});
