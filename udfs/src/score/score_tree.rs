//! `score_tree(model, f1, …)`: the prediction of a decision tree or a gradient-boosted
//! ensemble from an XGBoost JSON or LightGBM text model file, for every row of a batch. The
//! file is read when the query is planned (a missing or broken file is a planning error that
//! names it) and again only when it changes.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

use super::tree::TreeModel;
use crate::arguments::{
    array_len, coerce_features, constant_string, float64_column, scalar_string,
};
use crate::docs::SCORING;
use crate::file_cache::FileCache;

/// The `score_tree` function, with the model files it has read.
#[derive(Debug)]
pub struct ScoreTree {
    signature: Signature,
    models: FileCache<TreeModel>,
}

crate::function_identity!(ScoreTree);

impl Default for ScoreTree {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Stable),
            models: FileCache::new("model file"),
        }
    }
}

impl ScoreTree {
    /// The model in the file at `path`.
    pub fn model(&self, path: &str) -> Result<Arc<TreeModel>> {
        self.models.get(path, TreeModel::parse)
    }
}

impl ScalarUDFImpl for ScoreTree {
    fn name(&self) -> &str {
        "score_tree"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() < 2 {
            return plan_err!("score_tree takes a model file and at least one feature");
        }
        let mut coerced = coerce_features(self.name(), arg_types, 1)?;
        coerced[0] = DataType::Utf8;
        Ok(coerced)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let path = constant_string(self.name(), "model file", args.scalar_arguments, 0)?;
        let model = self.model(path)?;
        let given = args.arg_fields.len() - 1;
        if model.ensemble.features() != given {
            return plan_err!(
                "score_tree: {} model file '{path}' has {} but {given} were given",
                model.format,
                model.describe_features()
            );
        }
        Ok(Arc::new(Field::new(self.name(), DataType::Float64, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let path = scalar_string(self.name(), &args.args, 0)?;
        let model = self.model(path)?;
        // The file may have been replaced since the query was planned.
        if model.ensemble.features() != args.args.len() - 1 {
            return exec_err!(
                "score_tree: model file '{path}' now has {} but {} were given",
                model.describe_features(),
                args.args.len() - 1
            );
        }
        let rows = array_len(&args.args, args.number_rows);
        let features = args.args[1..]
            .iter()
            .map(|a| float64_column(a, rows))
            .collect::<Result<Vec<_>>>()?;
        // A NULL feature is a missing value, which the trees route by their own rules.
        let filled: Vec<Cow<'_, [f64]>> = features
            .iter()
            .map(|f| match f.null_count() {
                0 => Cow::Borrowed(&f.values()[..]),
                _ => Cow::Owned(f.iter().map(|x| x.unwrap_or(f64::NAN)).collect()),
            })
            .collect();
        let columns: Vec<&[f64]> = filled.iter().map(|c| c.as_ref()).collect();
        let mut scores = Vec::new();
        model.ensemble.predict(&columns, &mut scores);
        let scores: ArrayRef = Arc::new(Float64Array::from(scores));
        Ok(ColumnarValue::Array(scores))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        SCORING,
        "The prediction of a decision tree or a gradient-boosted (or random-forest) ensemble, \
         as the training library's predict() gives it: a probability for binary \
         classifiers, the value for regression. Models are read from XGBoost's JSON model \
         format (save_model('model.json')) or LightGBM's text model format \
         (save_model('model.txt')), numeric splits and one output. A NULL feature is a \
         missing value, routed the way the model learned. The file is read once per query; \
         a missing or broken file, or a number of features other than the model's, is a \
         planning error.",
        "score_tree(model_file, feature1[, ..., featureN])",
    )
    .with_sql_example(
        "```sql\n> SELECT user_id, score_tree('models/convert.json', sessions_7d, minutes_7d, pages_7d) AS p_convert\n  FROM profiles;\n```",
    )
    .with_argument("model_file", "The path of an XGBoost .json or a LightGBM .txt model.")
    .with_argument("feature1..featureN", "Numeric features, in the model's feature order.")
    .with_related_udf("score_logistic")
    .build()
});
