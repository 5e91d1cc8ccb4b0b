//! `profusion bench --only udf_`: the UDF library's scalar functions, invoked on Arrow
//! batches of 8192 rows on one thread, the way a query's projection calls them. Inputs,
//! model files and rule files are generated before the clock starts.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray};
use datafusion::arrow::datatypes::Field;
use datafusion::common::ScalarValue;
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::{ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF};

use crate::error::{Error, Result};

const BATCH: usize = 8192;

/// The scalar-function benchmarks.
pub(super) struct UdfBench<'a> {
    /// Rows per benchmark.
    pub rows: u64,
    pub repeat: u32,
    pub dir: &'a Path,
}

impl UdfBench<'_> {
    pub(super) async fn run(&self, selected: &dyn Fn(&str) -> bool) -> Result<()> {
        let functions = profusion_udfs::scalar_functions();
        let function = |name: &str| {
            functions
                .iter()
                .find(|f| f.name() == name)
                .map(Arc::clone)
                .ok_or_else(|| io_error(format!("no function {name}")))
        };
        if selected("udf_score_logistic") {
            let path = self.dir.join("logistic16.json");
            write(&path, &logistic_model(16))?;
            let features = feature_columns(16, 1);
            let mut args = vec![path_argument(&path)];
            args.extend(features.into_iter().map(ColumnarValue::Array));
            let run = self.time(&function("score_logistic")?, args)?;
            report(
                "udf_score_logistic",
                run,
                "16 features, model from a JSON file",
            );
        }
        if selected("udf_score_tree") {
            let path = self.dir.join("trees100.json");
            write(&path, &xgboost_model(100, 6, 16))?;
            let mut args = vec![path_argument(&path)];
            args.extend(feature_columns(16, 2).into_iter().map(ColumnarValue::Array));
            let run = self.time(&function("score_tree")?, args)?;
            report(
                "udf_score_tree",
                run,
                "100 trees of depth 6 over 16 features (XGBoost JSON)",
            );
        }
        if selected("udf_to_epoch_millis") {
            let times: StringArray = (0..BATCH as i64)
                .map(|i| {
                    let s = i * 7919 % 86_400;
                    Some(format!(
                        "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                        1 + i % 12,
                        1 + i % 28,
                        s / 3600,
                        s / 60 % 60,
                        s % 60,
                        i % 1000
                    ))
                })
                .collect();
            let run = self.time(
                &function("to_epoch_millis")?,
                vec![ColumnarValue::Array(Arc::new(times))],
            )?;
            report(
                "udf_to_epoch_millis",
                run,
                "ISO-8601 text with milliseconds and Z",
            );
        }
        if selected("udf_categorize_intent") {
            let path = self.dir.join("intents50.yaml");
            write(&path, &intent_rules(50))?;
            let messages: StringArray = (0..BATCH).map(|i| Some(chat_message(i))).collect();
            let args = vec![
                ColumnarValue::Array(Arc::new(messages)),
                path_argument(&path),
            ];
            let run = self.time(&function("categorize_intent")?, args)?;
            report(
                "udf_categorize_intent",
                run,
                "50 rules (150 keywords, 10 patterns), chat-sized messages",
            );
        }
        Ok(())
    }

    /// Invokes `function` on batches of `args` until `rows` rows are done, `repeat` times:
    /// the fastest and the median time.
    fn time(
        &self,
        function: &Arc<ScalarUDF>,
        args: Vec<ColumnarValue>,
    ) -> Result<(u64, Duration, Duration)> {
        let arg_fields: Vec<Arc<Field>> = args
            .iter()
            .enumerate()
            .map(|(i, a)| Arc::new(Field::new(format!("a{i}"), a.data_type(), true)))
            .collect();
        let scalars: Vec<Option<&ScalarValue>> = args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        // Planning: what a query does once (the model or rules file is read here).
        let return_field = function
            .return_field_from_args(ReturnFieldArgs {
                arg_fields: &arg_fields,
                scalar_arguments: &scalars,
            })
            .map_err(|e| io_error(e.to_string()))?;
        let config = Arc::new(ConfigOptions::default());
        let batches = self.rows.div_ceil(BATCH as u64);
        let mut times = Vec::new();
        for _ in 0..self.repeat {
            let start = Instant::now();
            for _ in 0..batches {
                let out = function
                    .invoke_with_args(ScalarFunctionArgs {
                        args: args.clone(),
                        arg_fields: arg_fields.clone(),
                        number_rows: BATCH,
                        return_field: Arc::clone(&return_field),
                        config_options: Arc::clone(&config),
                    })
                    .map_err(|e| io_error(e.to_string()))?;
                std::hint::black_box(out);
            }
            times.push(start.elapsed());
        }
        times.sort();
        Ok((batches * BATCH as u64, times[0], times[times.len() / 2]))
    }
}

fn report(name: &str, (rows, best, median): (u64, Duration, Duration), notes: &str) {
    let per_second = |t: Duration| format!("{:.0}", rows as f64 / t.as_secs_f64());
    println!(
        "{name:<16} {rows:>12} {:>10.3} {:>12} {:>12}  {notes}",
        best.as_secs_f64(),
        per_second(best),
        per_second(median)
    );
}

fn path_argument(path: &Path) -> ColumnarValue {
    ColumnarValue::Scalar(ScalarValue::Utf8(Some(path.display().to_string())))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}

fn io_error(message: String) -> Error {
    Error::Io {
        context: "UDF benchmark".into(),
        source: std::io::Error::other(message),
    }
}

/// A small deterministic generator, so every run scores the same inputs.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }

    fn unit(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 53) as f64
    }
}

fn feature_columns(count: usize, seed: u64) -> Vec<ArrayRef> {
    let mut random = Lcg(seed);
    (0..count)
        .map(|_| {
            Arc::new(Float64Array::from_iter_values(
                (0..BATCH).map(|_| random.unit() * 2.0 - 1.0),
            )) as ArrayRef
        })
        .collect()
}

fn logistic_model(features: usize) -> String {
    let weights: Vec<String> = (0..features)
        .map(|i| format!("{:.3}", (i as f64 - 7.5) / 10.0))
        .collect();
    format!("{{\"weights\": [{}], \"bias\": -0.25}}", weights.join(", "))
}

/// An XGBoost JSON model of `trees` complete trees of `depth`, split on random features.
fn xgboost_model(trees: usize, depth: u32, features: usize) -> String {
    let mut random = Lcg(7);
    let nodes = (1usize << (depth + 1)) - 1;
    let splits = (1usize << depth) - 1;
    let mut text = String::from(
        "{\"learner\": {\"feature_names\": [], \"gradient_booster\": {\"name\": \"gbtree\", \"model\": {\"trees\": [",
    );
    for t in 0..trees {
        let (mut left, mut right, mut index, mut condition, mut default_left) =
            (vec![], vec![], vec![], vec![], vec![]);
        for node in 0..nodes {
            if node < splits {
                left.push((2 * node + 1) as i64);
                right.push((2 * node + 2) as i64);
                index.push((random.next() % features as u64) as i64);
                condition.push(random.unit() * 1.6 - 0.8);
                default_left.push((random.next() % 2) as i64);
            } else {
                left.push(-1);
                right.push(-1);
                index.push(0);
                condition.push(random.unit() * 0.2 - 0.1);
                default_left.push(0);
            }
        }
        let list = |v: &[i64]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let floats = condition
            .iter()
            .map(|x| format!("{x:.6}"))
            .collect::<Vec<_>>()
            .join(",");
        let _ = write!(
            text,
            "{}{{\"left_children\": [{}], \"right_children\": [{}], \"split_indices\": [{}], \"split_conditions\": [{floats}], \"default_left\": [{}]}}",
            if t == 0 { "" } else { "," },
            list(&left),
            list(&right),
            list(&index),
            list(&default_left)
        );
    }
    let _ = write!(
        text,
        "]}}}}, \"learner_model_param\": {{\"base_score\": \"5E-1\", \"num_feature\": \"{features}\"}}, \"objective\": {{\"name\": \"binary:logistic\"}}}}}}"
    );
    text
}

const WORDS: &[&str] = &[
    "the",
    "app",
    "my",
    "team",
    "account",
    "please",
    "when",
    "dashboard",
    "upload",
    "photo",
    "invite",
    "export",
    "report",
    "thanks",
    "today",
    "again",
    "settings",
    "login",
    "page",
    "button",
    "mobile",
    "email",
    "project",
];

/// 50 rules of three keywords each; every fifth has a pattern too.
fn intent_rules(rules: usize) -> String {
    let mut text = String::from("default: other\nrules:\n");
    for r in 0..rules {
        let _ = writeln!(
            text,
            "  - label: intent_{r}\n    keywords: [kw{r}a, kw{r}b, \"phrase {r} here\"]"
        );
        if r % 5 == 0 {
            let _ = writeln!(text, "    patterns: ['\\bcode {r}[0-9]+\\b']");
        }
    }
    text
}

/// A 10 to 16 word message; one in four carries a rule's keyword.
fn chat_message(i: usize) -> String {
    let words = 10 + i % 7;
    let mut text = String::new();
    for w in 0..words {
        if w > 0 {
            text.push(' ');
        }
        text.push_str(WORDS[(i * 31 + w * 17) % WORDS.len()]);
    }
    if i.is_multiple_of(4) {
        let _ = write!(text, " kw{}b", i % 50);
    }
    text.push('?');
    text
}
