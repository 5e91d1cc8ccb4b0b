//! `score_linear(model, f1, …)` and `score_logistic(model, f1, …)`: a weighted sum of
//! features plus a bias, and its logistic sigmoid. The model is a file (read when the query
//! is planned, see [`LinearModel`]) or, per row, the struct `online_logistic` returns.
//! Evaluation is column at a time: one multiply-add pass per feature over the batch.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StructArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

use super::linear_model::LinearModel;
use crate::arguments::{
    array_len, coerce_features, constant_string, float64_column, scalar_string,
};
use crate::docs::SCORING;
use crate::file_cache::FileCache;

/// What the weighted sum is turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkFunction {
    /// The sum itself (`score_linear`).
    Identity,
    /// `1 / (1 + e^-sum)` (`score_logistic`).
    Logistic,
}

/// `score_linear` or `score_logistic`, with the model files it has read.
#[derive(Debug)]
pub struct LinearScore {
    link: LinkFunction,
    signature: Signature,
    models: FileCache<LinearModel>,
}

crate::function_identity!(LinearScore);

impl LinearScore {
    /// The function applying `link` to the weighted sum.
    pub fn new(link: LinkFunction) -> Self {
        Self {
            link,
            signature: Signature::user_defined(Volatility::Stable),
            models: FileCache::new("model file"),
        }
    }

    fn model(&self, path: &str) -> Result<Arc<LinearModel>> {
        self.models
            .get(path, |bytes| LinearModel::parse(path, bytes))
    }

    fn link(&self, sums: &mut [f64]) {
        if self.link == LinkFunction::Logistic {
            for sum in sums {
                *sum = sigmoid(*sum);
            }
        }
    }

    /// Scores every row with the model in a file.
    fn score_with_file(
        &self,
        model: &LinearModel,
        features: &[Arc<Float64Array>],
        rows: usize,
    ) -> Result<Float64Array> {
        let mut sums = vec![model.bias; rows];
        for (weight, feature) in model.weights.iter().zip(features) {
            for (sum, x) in sums.iter_mut().zip(feature.values().iter()) {
                *sum += weight * x;
            }
        }
        self.link(&mut sums);
        let nulls = features.iter().fold(None, |nulls: Option<NullBuffer>, f| {
            NullBuffer::union(nulls.as_ref(), f.nulls())
        });
        Ok(Float64Array::new(sums.into(), nulls))
    }

    /// Scores every row with its own model (a struct of bias and weights).
    fn score_with_rows(
        &self,
        models: &StructArray,
        features: &[Arc<Float64Array>],
        rows: usize,
    ) -> Result<Float64Array> {
        let (Some(bias), Some(weights)) = (
            models.column_by_name("bias"),
            models.column_by_name("weights"),
        ) else {
            return exec_err!(
                "{}: a model struct has the fields bias and weights",
                self.name()
            );
        };
        // A struct written by hand may hold integers: read it as online_logistic's.
        let bias = cast(bias, &DataType::Float64)?;
        let bias = bias.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        let weights = cast(weights, &DataType::new_list(DataType::Float64, true))?;
        let weights = weights.as_list::<i32>();
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if models.is_null(row)
                || bias.is_null(row)
                || weights.is_null(row)
                || features.iter().any(|f| f.is_null(row))
            {
                out.push(None);
                continue;
            }
            let row_weights = weights.value(row);
            let row_weights =
                row_weights.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
            if row_weights.len() != features.len() {
                return exec_err!(
                    "{}: the model of row {} has {} weights but {} features were given",
                    self.name(),
                    row + 1,
                    row_weights.len(),
                    features.len()
                );
            }
            let mut sum = [bias.value(row)];
            sum[0] += row_weights
                .values()
                .iter()
                .zip(features)
                .map(|(w, f)| w * f.value(row))
                .sum::<f64>();
            self.link(&mut sum);
            out.push(Some(sum[0]));
        }
        Ok(out.into_iter().collect())
    }
}

/// The logistic sigmoid.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl ScalarUDFImpl for LinearScore {
    fn name(&self) -> &str {
        match self.link {
            LinkFunction::Identity => "score_linear",
            LinkFunction::Logistic => "score_logistic",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < 2 {
            return plan_err!("{} takes a model and at least one feature", self.name());
        }
        let mut coerced = coerce_features(self.name(), arg_types, 1)?;
        coerced[0] = match &arg_types[0] {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
            DataType::Struct(_) => arg_types[0].clone(),
            other => {
                return plan_err!(
                    "{}: the model must be the path of a model file or the struct online_logistic returns, not {other}",
                    self.name()
                );
            }
        };
        Ok(coerced)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if matches!(args.arg_fields[0].data_type(), DataType::Utf8) {
            let path = constant_string(self.name(), "model file", args.scalar_arguments, 0)?;
            let model = self.model(path)?;
            let given = args.arg_fields.len() - 1;
            if model.weights.len() != given {
                return plan_err!(
                    "{}: model file '{path}' has {} but {given} were given",
                    self.name(),
                    model.describe_features()
                );
            }
        }
        Ok(Arc::new(Field::new(self.name(), DataType::Float64, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = array_len(&args.args, args.number_rows);
        let features = args.args[1..]
            .iter()
            .map(|a| float64_column(a, rows))
            .collect::<Result<Vec<_>>>()?;
        let scores = match &args.args[0] {
            ColumnarValue::Scalar(s) if s.data_type() == DataType::Utf8 => {
                let path = scalar_string(self.name(), &args.args, 0)?;
                let model = self.model(path)?;
                // The file may have been replaced since the query was planned.
                if model.weights.len() != features.len() {
                    return exec_err!(
                        "{}: model file '{path}' now has {} but {} were given",
                        self.name(),
                        model.describe_features(),
                        features.len()
                    );
                }
                self.score_with_file(&model, &features, rows)?
            }
            models => {
                let models = models.to_array(rows)?;
                self.score_with_rows(models.as_struct(), &features, rows)?
            }
        };
        let scores: ArrayRef = Arc::new(scores);
        Ok(ColumnarValue::Array(scores))
    }

    fn documentation(&self) -> Option<&Documentation> {
        match self.link {
            LinkFunction::Identity => Some(&LINEAR_DOC),
            LinkFunction::Logistic => Some(&LOGISTIC_DOC),
        }
    }
}

const MODEL_ARGUMENT: &str = "The path of a model file, JSON or YAML: {\"features\": [names], \
    \"weights\": [one per feature], \"bias\": number}; or the struct online_logistic returns.";

static LINEAR_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        SCORING,
        "The weighted sum of the features plus the bias of a linear model. A NULL feature \
         gives NULL. The file is read once per query; a missing or broken file, or a number \
         of features other than the model's, is a planning error.",
        "score_linear(model, feature1[, ..., featureN])",
    )
    .with_sql_example(
        "```sql\n> SELECT score_linear('models/ltv.json', sessions_7d, spend_30d) FROM profiles;\n```",
    )
    .with_argument("model", MODEL_ARGUMENT)
    .with_argument("feature1..featureN", "Numeric features, in the order of the model's weights.")
    .with_related_udf("score_logistic")
    .build()
});

static LOGISTIC_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        SCORING,
        "The probability a logistic regression gives: 1 / (1 + exp(-(bias + sum of \
         weight * feature))). The model is a file (read once per query; missing, broken or \
         mismatched files are planning errors) or, per row, the weights online_logistic \
         trained. A NULL feature gives NULL.",
        "score_logistic(model, feature1[, ..., featureN])",
    )
    .with_sql_example(
        "```sql\n> SELECT score_logistic('models/churn.json', days_since_seen, sessions_7d) AS churn FROM profiles;\n\
         > SELECT score_logistic(online_logistic(converted, pages, minutes), 3, 1.5) FROM signups;\n```",
    )
    .with_argument("model", MODEL_ARGUMENT)
    .with_argument("feature1..featureN", "Numeric features, in the order of the model's weights.")
    .with_related_udf("score_linear")
    .with_related_udf("online_logistic")
    .build()
});
