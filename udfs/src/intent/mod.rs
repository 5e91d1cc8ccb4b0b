//! `categorize_intent(text, rules)`: an intent label for a chat message or a search, from
//! the keyword and pattern rules of a JSON or YAML file (format in [`rules`]). The file is
//! read and compiled when the query is planned — a missing or broken file is a planning
//! error — and again only when it changes.

pub mod rules;

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::arguments::{answer, argument_array, constant_string, scalar_string};
use crate::config_file::parse_json_or_yaml;
use crate::docs::NORMALIZATION;
use crate::file_cache::FileCache;
use rules::{IntentMatcher, RuleFile};

/// The `categorize_intent` function, with the rule files it has compiled.
#[derive(Debug)]
pub struct CategorizeIntent {
    signature: Signature,
    rules: FileCache<IntentMatcher>,
}

impl Default for CategorizeIntent {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Stable),
            rules: FileCache::new("rules file"),
        }
    }
}

crate::function_identity!(CategorizeIntent);

impl CategorizeIntent {
    /// The compiled rules of the file at `path`.
    pub fn matcher(&self, path: &str) -> Result<Arc<IntentMatcher>> {
        self.rules.get(path, |bytes| {
            let file: RuleFile = parse_json_or_yaml(path, bytes)?;
            IntentMatcher::compile(file)
        })
    }
}

impl ScalarUDFImpl for CategorizeIntent {
    fn name(&self) -> &str {
        "categorize_intent"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let is_string = |t: &DataType| {
            matches!(
                t,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
            )
        };
        match arg_types {
            [text, rules] if is_string(text) && is_string(rules) => {
                Ok(vec![DataType::Utf8, DataType::Utf8])
            }
            [text, _] if !is_string(text) => {
                plan_err!("categorize_intent: the text must be a string, not {text}")
            }
            [_, rules] => {
                plan_err!("categorize_intent: the rules file must be a string path, not {rules}")
            }
            _ => plan_err!("categorize_intent takes a text and the path of a rules file"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let path = constant_string(self.name(), "rules file", args.scalar_arguments, 1)?;
        self.matcher(path)?;
        Ok(Arc::new(Field::new(self.name(), DataType::Utf8, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let matcher = self.matcher(scalar_string(self.name(), &args.args, 1)?)?;
        let (array, scalar) = argument_array(&args.args[0], args.number_rows)?;
        let strings = cast(&array, &DataType::Utf8)?;
        let strings = strings.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(array.len(), array.len() * 8);
        for text in strings.iter() {
            out.append_option(text.and_then(|text| matcher.label(text)));
        }
        let out: ArrayRef = Arc::new(out.finish());
        answer(out, scalar)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        NORMALIZATION,
        "The intent label of a message, from the rules of a JSON or YAML file: each rule has \
         a label, keywords (whole words or phrases, any case) and patterns (regular \
         expressions, any case); rules are tried in the order written and the first that \
         matches wins; 'default' labels messages no rule matches (NULL without it). The file \
         is compiled once per query; a missing or broken file is a planning error.",
        "categorize_intent(text, rules_file)",
    )
    .with_sql_example(
        "```sql\n> SELECT categorize_intent('How much is the pro plan?', 'sql/intents.yaml');\n\
         +---------------------------------------------------------------------------+\n\
         | categorize_intent(Utf8(\"How much is the pro plan?\"),Utf8(\"sql/intents.yaml\")) |\n\
         +---------------------------------------------------------------------------+\n\
         | pricing                                                                   |\n\
         +---------------------------------------------------------------------------+\n```",
    )
    .with_argument("text", "A chat message, a search or any free text.")
    .with_argument(
        "rules_file",
        "The path of the rules: `default: label` (optional) and `rules: [{label, keywords, patterns}]`.",
    )
    .build()
});
