//! `top_k(x, k)`: the k most frequent values of a group, most frequent first. Counts are
//! exact: the state holds every distinct value with its count, so partial states (a
//! checkpoint, a partial aggregate) merge without error.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use super::constants::positive_count;
use crate::docs::BEHAVIOUR;

/// The most values `k` may ask for.
const MAX_K: usize = 10_000;

/// The `top_k` aggregate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TopK {
    signature: Signature,
}

impl Default for TopK {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for TopK {
    fn name(&self) -> &str {
        "top_k"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [value, k] => {
                let value = match value {
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                        DataType::Utf8
                    }
                    t if t.is_integer() => DataType::Int64,
                    DataType::Boolean | DataType::Date32 | DataType::Timestamp(..) => value.clone(),
                    other => {
                        return plan_err!(
                            "top_k: values must be text, integers, booleans, dates or timestamps, not {other}"
                        );
                    }
                };
                if !k.is_integer() {
                    return plan_err!("top_k: k must be an integer, not {k}");
                }
                Ok(vec![value, DataType::Int64])
            }
            _ => plan_err!("top_k takes a value and k"),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::new_list(arg_types[0].clone(), true))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let value = args.input_fields[0].data_type().clone();
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[values]", args.name),
                DataType::new_list(value, true),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[counts]", args.name),
                DataType::new_list(DataType::UInt64, true),
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(TopKAccumulator {
            k: positive_count(self.name(), "k", &args.exprs[1], MAX_K)?,
            value_type: args.expr_fields[0].data_type().clone(),
            counts: HashMap::new(),
            bytes: 0,
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// Exact counts of one group's values.
#[derive(Debug)]
struct TopKAccumulator {
    k: usize,
    value_type: DataType,
    counts: HashMap<ScalarValue, u64>,
    /// Heap bytes of the distinct values held.
    bytes: usize,
}

impl TopKAccumulator {
    fn add(&mut self, value: ScalarValue, count: u64) {
        if value.is_null() {
            return;
        }
        match self.counts.get_mut(&value) {
            Some(c) => *c += count,
            None => {
                self.bytes += value.size();
                self.counts.insert(value, count);
            }
        }
    }

    /// The values by descending count; ties by ascending value, so results repeat.
    fn ranked(&self) -> Vec<(&ScalarValue, u64)> {
        let mut entries: Vec<(&ScalarValue, u64)> =
            self.counts.iter().map(|(v, c)| (v, *c)).collect();
        entries.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| a.0.partial_cmp(b.0).unwrap_or(std::cmp::Ordering::Equal))
        });
        entries
    }

    fn list(&self, values: Vec<ScalarValue>, item_type: &DataType) -> ScalarValue {
        ScalarValue::List(ScalarValue::new_list_nullable(&values, item_type))
    }
}

impl Accumulator for TopKAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let column = &values[0];
        for row in 0..column.len() {
            if column.is_valid(row) {
                self.add(ScalarValue::try_from_array(column, row)?, 1);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let top = self
            .ranked()
            .into_iter()
            .take(self.k)
            .map(|(v, _)| v.clone())
            .collect();
        Ok(self.list(top, &self.value_type.clone()))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.counts.capacity() * (std::mem::size_of::<ScalarValue>() + 8)
            + self.bytes
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let ranked = self.ranked();
        let values = ranked.iter().map(|(v, _)| (*v).clone()).collect();
        let counts = ranked
            .iter()
            .map(|(_, c)| ScalarValue::UInt64(Some(*c)))
            .collect();
        Ok(vec![
            self.list(values, &self.value_type.clone()),
            self.list(counts, &DataType::UInt64),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let values: &ListArray = states[0].as_list();
        let counts: &ListArray = states[1].as_list();
        for row in 0..values.len() {
            if values.is_null(row) || counts.is_null(row) {
                continue;
            }
            let (row_values, row_counts) = (values.value(row), counts.value(row));
            let row_counts: &UInt64Array = row_counts.as_primitive::<UInt64Type>();
            for i in 0..row_values.len() {
                self.add(
                    ScalarValue::try_from_array(&row_values, i)?,
                    row_counts.value(i),
                );
            }
        }
        Ok(())
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        BEHAVIOUR,
        "The k most frequent values of a group as a list, most frequent first; values \
         equally frequent come in ascending order. NULLs are not counted. Counts are exact.",
        "top_k(x, k)",
    )
    .with_sql_example(
        "```sql\n> SELECT user_id, top_k(category, 3) AS favourite_categories FROM views GROUP BY user_id;\n```",
    )
    .with_argument("x", "Text, an integer, a boolean, a date or a timestamp.")
    .with_argument("k", "How many values, an integer constant from 1 to 10000.")
    .build()
});
