//! XGBoost's JSON model format (`Booster.save_model("model.json")`, versions 1.x to 3.x):
//! `gbtree` boosters with numeric splits, one output (binary classification or
//! regression). XGBoost compares and sums in f32; so does the ensemble built here.

use serde::Deserialize;

use super::ensemble::{EnsembleBuilder, Output, SourceNode, TreeEnsemble};

#[derive(Deserialize)]
struct ModelFile {
    learner: Learner,
}

#[derive(Deserialize)]
struct Learner {
    #[serde(default)]
    feature_names: Vec<String>,
    gradient_booster: GradientBooster,
    learner_model_param: LearnerModelParam,
    objective: Objective,
}

#[derive(Deserialize)]
struct GradientBooster {
    name: String,
    model: Option<GbTreeModel>,
}

#[derive(Deserialize)]
struct GbTreeModel {
    trees: Vec<TreeJson>,
}

#[derive(Deserialize)]
struct TreeJson {
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_indices: Vec<i64>,
    split_conditions: Vec<f64>,
    default_left: Vec<serde_json::Value>,
    #[serde(default)]
    split_type: Vec<i64>,
}

#[derive(Deserialize)]
struct LearnerModelParam {
    base_score: String,
    #[serde(default)]
    num_class: Option<String>,
    num_feature: String,
    #[serde(default)]
    num_target: Option<String>,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

/// The model's feature names (empty when it was trained without them) and its ensemble.
pub fn parse(text: &str) -> Result<(Vec<String>, TreeEnsemble), String> {
    let file: ModelFile =
        serde_json::from_str(text).map_err(|e| format!("not an XGBoost JSON model: {e}"))?;
    let learner = file.learner;
    if learner.gradient_booster.name != "gbtree" {
        return Err(format!(
            "booster '{}' is not supported (only gbtree)",
            learner.gradient_booster.name
        ));
    }
    let params = &learner.learner_model_param;
    let outputs =
        |value: &Option<String>| value.as_deref().unwrap_or("0").parse::<u32>().unwrap_or(0);
    if outputs(&params.num_class) > 1 || outputs(&params.num_target) > 1 {
        return Err("multi-class and multi-target models are not supported".to_string());
    }
    let features: usize = params
        .num_feature
        .parse()
        .map_err(|_| format!("num_feature '{}' is not a number", params.num_feature))?;
    let base_score = parse_base_score(&params.base_score)?;
    let (output, base_margin) = match learner.objective.name.as_str() {
        "binary:logistic" | "reg:logistic" => (Output::Sigmoid { scale: 1.0 }, logit(base_score)?),
        "binary:logitraw" => (Output::Identity, logit(base_score)?),
        "reg:squarederror"
        | "reg:squaredlogerror"
        | "reg:pseudohubererror"
        | "reg:absoluteerror"
        | "reg:quantileerror"
        | "rank:pairwise"
        | "rank:ndcg"
        | "rank:map" => (Output::Identity, base_score),
        "count:poisson" | "reg:gamma" | "reg:tweedie" => {
            if base_score <= 0.0 {
                return Err(format!(
                    "base_score {base_score} must be positive for a log-link objective"
                ));
            }
            (Output::Exp, base_score.ln())
        }
        other => return Err(format!("objective '{other}' is not supported")),
    };
    let Some(model) = learner.gradient_booster.model else {
        return Err("the booster has no model".to_string());
    };
    let mut builder = EnsembleBuilder::new(features, base_margin, output)?.in_f32();
    for (number, tree) in model.trees.iter().enumerate() {
        let nodes = source_nodes(tree).map_err(|e| format!("tree {number}: {e}"))?;
        builder.add_tree(&nodes)?;
    }
    Ok((learner.feature_names, builder.build()?))
}

/// `"5E-1"` (XGBoost 1.x and 2.x) or `"[5E-1]"` (3.x).
fn parse_base_score(text: &str) -> Result<f64, String> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    if inner.contains(',') {
        return Err("a base_score per target is not supported".to_string());
    }
    inner
        .trim()
        .parse::<f32>()
        .map(f64::from)
        .map_err(|_| format!("base_score '{text}' is not a number"))
}

/// The margin of a probability, as XGBoost turns its base score into one (in f32).
fn logit(p: f64) -> Result<f64, String> {
    if !(p > 0.0 && p < 1.0) {
        return Err(format!(
            "base_score {p} must lie strictly between 0 and 1 for a logistic objective"
        ));
    }
    let p = p as f32;
    Ok(f64::from(-(1.0f32 / p - 1.0).ln()))
}

fn source_nodes(tree: &TreeJson) -> Result<Vec<SourceNode>, String> {
    let n = tree.left_children.len();
    if [
        tree.right_children.len(),
        tree.split_indices.len(),
        tree.split_conditions.len(),
        tree.default_left.len(),
    ]
    .iter()
    .any(|&len| len != n)
    {
        return Err("its node arrays differ in length".to_string());
    }
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let (left, right) = (tree.left_children[i], tree.right_children[i]);
        if left < 0 {
            nodes.push(SourceNode::Leaf(tree.split_conditions[i]));
            continue;
        }
        if tree.split_type.get(i).copied().unwrap_or(0) != 0 {
            return Err("categorical splits are not supported".to_string());
        }
        let feature = usize::try_from(tree.split_indices[i])
            .map_err(|_| "a negative feature index".to_string())?;
        let default_left = match &tree.default_left[i] {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::Number(n) => n.as_i64() == Some(1),
            other => return Err(format!("default_left {other} is not a boolean")),
        };
        // XGBoost goes left when `x < threshold` in f32; for f32 values that is
        // `x <= the largest f32 below threshold`.
        let threshold = (tree.split_conditions[i] as f32).next_down() as f64;
        let child =
            |c: i64| usize::try_from(c).map_err(|_| format!("node {i} has a negative child"));
        nodes.push(SourceNode::Split {
            feature,
            threshold,
            missing_left: default_left,
            zero_is_missing: false,
            left: child(left)?,
            right: child(right)?,
        });
    }
    Ok(nodes)
}
