//! One hash aggregation, built from DataFusion's own pieces: [`GroupValues`] interns the
//! group keys and each aggregate's [`GroupsAccumulator`] folds rows into its groups. A window
//! bin holds one of these, so every DataFusion aggregate, built-in or user-defined, works
//! inside windows unchanged.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{Result, internal_err};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::constant_arrays::ConstantArrays;
use super::key_dictionary::KeyDictionary;

/// The expressions of a grouped aggregation: keys, aggregate arguments and `FILTER`s.
#[derive(Debug, Clone)]
pub struct AggregateExprs {
    /// The group keys this aggregation interns (window columns excluded for binned windows).
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The schema of the interned keys.
    pub key_schema: SchemaRef,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Per aggregate: its arguments followed by its `ORDER BY` expressions.
    pub arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
}

impl AggregateExprs {
    /// The columns of every aggregate's intermediate state, in order, as a checkpoint
    /// stores them.
    pub fn state_fields(&self) -> Result<Vec<Field>> {
        let mut fields = Vec::new();
        for aggregate in &self.aggregates {
            for field in aggregate.state_fields()? {
                let name = format!("state_{}", fields.len());
                fields.push(Field::new(name, field.data_type().clone(), true));
            }
        }
        Ok(fields)
    }
}

/// The keys, arguments and filters of a batch, evaluated once.
#[derive(Debug, Clone)]
pub struct EvaluatedRows {
    pub keys: Vec<ArrayRef>,
    pub arguments: Vec<Vec<ArrayRef>>,
    pub filters: Vec<Option<ArrayRef>>,
    pub num_rows: usize,
}

impl AggregateExprs {
    /// The expressions of `aggregates` (with their `FILTER`s) grouped by `keys`, over rows
    /// of `input`. Each aggregate's arguments are followed by its `ORDER BY` expressions, so
    /// order-sensitive accumulators see the values they order by.
    pub fn try_new(
        keys: Vec<(Arc<dyn PhysicalExpr>, String)>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
        input: &Schema,
    ) -> Result<Self> {
        let (keys, names): (Vec<_>, Vec<_>) = keys.into_iter().unzip();
        let arguments = aggregates
            .iter()
            .map(|aggregate| {
                let mut args = aggregate.expressions();
                args.extend(aggregate.order_bys().iter().map(|o| Arc::clone(&o.expr)));
                args
            })
            .collect();
        Ok(Self {
            key_schema: schema_of(&keys, &names, input)?,
            keys,
            aggregates,
            arguments,
            filters,
        })
    }

    /// Evaluates every expression over `batch`; a literal (`count(*)`'s) is a slice of an
    /// array `constants` keeps.
    pub fn evaluate(
        &self,
        batch: &RecordBatch,
        constants: &mut ConstantArrays,
    ) -> Result<EvaluatedRows> {
        let n = batch.num_rows();
        let mut eval = |e: &Arc<dyn PhysicalExpr>| constants.array(e.evaluate(batch)?, n);
        let mut rows = EvaluatedRows {
            keys: Vec::with_capacity(self.keys.len()),
            arguments: Vec::with_capacity(self.arguments.len()),
            filters: Vec::with_capacity(self.filters.len()),
            num_rows: n,
        };
        for key in &self.keys {
            rows.keys.push(eval(key)?);
        }
        for args in &self.arguments {
            rows.arguments
                .push(args.iter().map(&mut eval).collect::<Result<_>>()?);
        }
        for filter in &self.filters {
            rows.filters
                .push(filter.as_ref().map(&mut eval).transpose()?);
        }
        Ok(rows)
    }
}

/// The running state of one grouped aggregation.
pub struct GroupedAggregation {
    /// `None` when there are no keys: every row is in group 0.
    groups: Option<Box<dyn GroupValues>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    num_groups: usize,
    group_indices: Vec<usize>,
}

impl GroupedAggregation {
    /// An empty aggregation for `exprs`, interning its keys itself, with room for
    /// `expected_groups` groups before its keys' table grows.
    pub fn try_new(exprs: &AggregateExprs, expected_groups: usize) -> Result<Self> {
        let groups: Option<Box<dyn GroupValues>> = match exprs.key_schema.fields().as_ref() {
            [] => None,
            [key] if key.data_type() == &DataType::Utf8 => Some(Box::new(
                KeyDictionary::with_capacity(&exprs.key_schema, expected_groups)?,
            )),
            _ => Some(new_group_values(
                Arc::clone(&exprs.key_schema),
                &GroupOrdering::None,
            )?),
        };
        Self::with_groups(exprs, groups)
    }

    /// An empty aggregation for `exprs` whose rows' keys `groups` interns (`None`: every row
    /// is in one group).
    pub fn with_groups(
        exprs: &AggregateExprs,
        groups: Option<Box<dyn GroupValues>>,
    ) -> Result<Self> {
        let accumulators = exprs
            .aggregates
            .iter()
            .map(|aggregate| {
                if aggregate.groups_accumulator_supported() {
                    aggregate.create_groups_accumulator()
                } else {
                    let aggregate = Arc::clone(aggregate);
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        aggregate.create_accumulator()
                    })) as Box<dyn GroupsAccumulator>)
                }
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            groups,
            accumulators,
            num_groups: 0,
            group_indices: Vec::new(),
        })
    }

    /// Folds `rows` into the aggregation.
    pub fn update(&mut self, rows: &EvaluatedRows) -> Result<()> {
        if rows.num_rows == 0 {
            return Ok(());
        }
        match &mut self.groups {
            Some(groups) => {
                groups.intern(&rows.keys, &mut self.group_indices)?;
                self.num_groups = groups.len();
            }
            None => {
                self.group_indices.clear();
                self.group_indices.resize(rows.num_rows, 0);
                self.num_groups = 1;
            }
        }
        for ((accumulator, arguments), filter) in self
            .accumulators
            .iter_mut()
            .zip(&rows.arguments)
            .zip(&rows.filters)
        {
            let filter: Option<&BooleanArray> = filter.as_ref().map(|f| f.as_boolean());
            accumulator.update_batch(arguments, &self.group_indices, filter, self.num_groups)?;
        }
        Ok(())
    }

    /// The number of groups.
    pub fn num_groups(&self) -> usize {
        self.num_groups
    }

    /// Bytes held by keys and accumulator state.
    pub fn size(&self) -> usize {
        self.groups.as_ref().map_or(0, |g| g.size())
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
            + self.group_indices.capacity() * size_of::<usize>()
    }

    /// Takes every group out: its keys and each aggregate's intermediate state columns
    /// (the aggregation is left empty), for a checkpoint.
    pub fn take_state(&mut self) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>)> {
        let keys = match &mut self.groups {
            Some(groups) => groups.emit(EmitTo::All)?,
            None => Vec::new(),
        };
        let mut states = Vec::new();
        if self.num_groups > 0 {
            for accumulator in &mut self.accumulators {
                states.extend(accumulator.state(EmitTo::All)?);
            }
        }
        self.num_groups = 0;
        Ok((keys, states))
    }

    /// Merges groups taken out by [`Self::take_state`] (keys, then state columns) back in.
    pub fn merge_state(
        &mut self,
        exprs: &AggregateExprs,
        keys: &[ArrayRef],
        states: &[ArrayRef],
    ) -> Result<()> {
        let Some(rows) = states.first().map(|s| s.len()) else {
            return Ok(());
        };
        match &mut self.groups {
            Some(groups) => {
                groups.intern(keys, &mut self.group_indices)?;
                self.num_groups = groups.len();
            }
            None => {
                self.group_indices.clear();
                self.group_indices.resize(rows, 0);
                self.num_groups = 1;
            }
        }
        let mut at = 0;
        for (accumulator, aggregate) in self.accumulators.iter_mut().zip(&exprs.aggregates) {
            let fields = aggregate.state_fields()?.len();
            let Some(columns) = states.get(at..at + fields) else {
                return internal_err!(
                    "checkpointed window state lacks columns of {}",
                    aggregate.name()
                );
            };
            accumulator.merge_batch(columns, &self.group_indices, self.num_groups)?;
            at += fields;
        }
        Ok(())
    }

    /// Emits every group: its keys and each aggregate's value.
    pub fn emit(&mut self) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>)> {
        let keys = match &mut self.groups {
            Some(groups) => groups.emit(EmitTo::All)?,
            None => Vec::new(),
        };
        let values = self
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<Result<Vec<_>>>()?;
        if let Some(first) = values.first()
            && first.len() != self.num_groups
        {
            return internal_err!(
                "aggregate emitted {} rows for {} groups",
                first.len(),
                self.num_groups
            );
        }
        self.num_groups = 0;
        Ok((keys, values))
    }
}

/// The schema of the values of `exprs` evaluated over `input`.
pub fn schema_of(
    exprs: &[Arc<dyn PhysicalExpr>],
    names: &[String],
    input: &Schema,
) -> Result<SchemaRef> {
    let fields = exprs
        .iter()
        .zip(names)
        .map(|(e, name)| {
            Ok(datafusion::arrow::datatypes::Field::new(
                name,
                e.data_type(input)?,
                e.nullable(input)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}
