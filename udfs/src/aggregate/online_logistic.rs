//! `online_logistic(label, f1, …)`: a logistic regression trained by stochastic gradient
//! descent on the rows it sees, one step per row in arrival order, returning its weights as
//! a struct `score_logistic` takes. Partial models (from a checkpoint, or a partial
//! aggregate) merge by averaging their parameters weighted by the rows each has seen.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, Signature, Volatility,
};

use crate::arguments::{coerce_features, is_numeric};
use crate::docs::BEHAVIOUR;

/// The step size of each gradient step.
pub const LEARNING_RATE: f64 = 0.05;

/// The fields of the model struct: `bias`, `weights`, `rows`.
pub fn model_fields() -> Fields {
    Fields::from(vec![
        Field::new("bias", DataType::Float64, false),
        Field::new(
            "weights",
            DataType::new_list(DataType::Float64, true),
            false,
        ),
        Field::new("rows", DataType::Int64, false),
    ])
}

/// The `online_logistic` aggregate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct OnlineLogistic {
    signature: Signature,
}

impl Default for OnlineLogistic {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for OnlineLogistic {
    fn name(&self) -> &str {
        "online_logistic"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < 2 {
            return plan_err!("online_logistic takes a label and at least one feature");
        }
        if !is_numeric(&arg_types[0]) {
            return plan_err!(
                "online_logistic: the label must be a boolean or a number (0 or 1), not {}",
                arg_types[0]
            );
        }
        let mut coerced = coerce_features(self.name(), arg_types, 1)?;
        coerced[0] = DataType::Float64;
        Ok(coerced)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(model_fields()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[model]", args.name),
            DataType::Struct(model_fields()),
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let features = args.exprs.len() - 1;
        Ok(Box::new(Sgd {
            bias: 0.0,
            weights: vec![0.0; features],
            rows: 0,
        }))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

/// A model being trained.
#[derive(Debug, Clone, PartialEq)]
pub struct Sgd {
    bias: f64,
    weights: Vec<f64>,
    rows: i64,
}

impl Sgd {
    /// One gradient step of the log loss on a row.
    fn step(&mut self, label: f64, features: impl Iterator<Item = f64> + Clone) {
        let margin = self.bias
            + self
                .weights
                .iter()
                .zip(features.clone())
                .map(|(w, x)| w * x)
                .sum::<f64>();
        let error = 1.0 / (1.0 + (-margin).exp()) - label;
        for (w, x) in self.weights.iter_mut().zip(features) {
            *w -= LEARNING_RATE * error * x;
        }
        self.bias -= LEARNING_RATE * error;
        self.rows += 1;
    }

    /// Averages another model into this one, weighted by rows seen.
    fn merge(&mut self, bias: f64, weights: &[f64], rows: i64) {
        let total = self.rows + rows;
        if rows == 0 || total == 0 {
            return;
        }
        let (mine, theirs) = (self.rows as f64 / total as f64, rows as f64 / total as f64);
        self.bias = self.bias * mine + bias * theirs;
        for (w, other) in self.weights.iter_mut().zip(weights) {
            *w = *w * mine + other * theirs;
        }
        self.rows = total;
    }

    fn to_scalar(&self) -> Result<ScalarValue> {
        let weights = ScalarValue::new_list_nullable(
            &self
                .weights
                .iter()
                .map(|w| ScalarValue::Float64(Some(*w)))
                .collect::<Vec<_>>(),
            &DataType::Float64,
        );
        let model = StructArray::try_new(
            model_fields(),
            vec![
                Arc::new(Float64Array::from(vec![self.bias])) as ArrayRef,
                weights as ArrayRef,
                Arc::new(datafusion::arrow::array::Int64Array::from(vec![self.rows])),
            ],
            None,
        )?;
        Ok(ScalarValue::Struct(Arc::new(model)))
    }
}

impl Accumulator for Sgd {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let label = values[0].as_primitive::<Float64Type>();
        let features: Vec<&Float64Array> = values[1..]
            .iter()
            .map(|v| v.as_primitive::<Float64Type>())
            .collect();
        for row in 0..label.len() {
            if label.is_null(row) || features.iter().any(|f| f.is_null(row)) {
                continue;
            }
            let y = if label.value(row) > 0.5 { 1.0 } else { 0.0 };
            self.step(y, features.iter().map(|f| f.value(row)));
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.to_scalar()
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.weights.capacity() * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.to_scalar()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let models = states[0].as_struct();
        let bias = models.column(0).as_primitive::<Float64Type>();
        let weights = models.column(1).as_list::<i32>();
        let rows = models.column(2).as_primitive::<Int64Type>();
        for row in 0..models.len() {
            if models.is_null(row) {
                continue;
            }
            let row_weights = weights.value(row);
            let row_weights = row_weights.as_primitive::<Float64Type>();
            self.merge(bias.value(row), row_weights.values(), rows.value(row));
        }
        Ok(())
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        BEHAVIOUR,
        "Trains a logistic regression on the group's rows by stochastic gradient descent \
         (weights from 0, one step of the log loss per row in arrival order, learning rate \
         0.05) and returns it as a struct {bias, weights, rows} that score_logistic takes as \
         its model. A label above 0.5 (or true) is positive. Rows with a NULL label or \
         feature are skipped. Features on a scale of about -1 to 1 train best.",
        "online_logistic(label, feature1[, ..., featureN])",
    )
    .with_sql_example(
        "```sql\n> SELECT score_logistic(online_logistic(converted, pages / 10.0, minutes / 60.0), 0.4, 0.2) AS p\n  FROM signups;\n```",
    )
    .with_argument("label", "The outcome: a boolean, or a number where above 0.5 is positive.")
    .with_argument("feature1..featureN", "Numeric features.")
    .with_related_udf("score_logistic")
    .build()
});

#[cfg(test)]
mod tests {
    use super::Sgd;

    #[test]
    fn steps_match_the_gradient_of_the_log_loss() {
        let mut model = Sgd {
            bias: 0.0,
            weights: vec![0.0, 0.0],
            rows: 0,
        };
        model.step(1.0, [1.0, 2.0].into_iter());
        // margin 0, p = 0.5, error -0.5: w -= 0.05 * -0.5 * x.
        assert_eq!(model.weights, vec![0.025, 0.05]);
        assert_eq!(model.bias, 0.025);
    }

    #[test]
    fn merging_averages_by_rows() {
        let mut a = Sgd {
            bias: 1.0,
            weights: vec![2.0],
            rows: 3,
        };
        a.merge(5.0, &[6.0], 1);
        assert_eq!((a.bias, a.weights[0], a.rows), (2.0, 3.0, 4));
    }
}
