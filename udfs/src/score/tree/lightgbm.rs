//! LightGBM's text model format (`Booster.save_model("model.txt")`, version v3 and v4):
//! numeric splits with their missing-value rules, one output (binary classification or
//! regression), boosted or averaged (random forest) trees.

use super::ensemble::{EnsembleBuilder, Output, SourceNode, TreeEnsemble};

/// `decision_type` bits (LightGBM's `kCategoricalMask`, `kDefaultLeftMask`).
const CATEGORICAL: u32 = 1;
const DEFAULT_LEFT: u32 = 2;

/// The model's feature names and its ensemble.
pub fn parse(text: &str) -> Result<(Vec<String>, TreeEnsemble), String> {
    let mut header = Header::default();
    let mut trees: Vec<Vec<(&str, &str)>> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line == "end of trees" {
            break;
        }
        if line.starts_with("Tree=") {
            trees.push(Vec::new());
            continue;
        }
        if line == "average_output" && trees.is_empty() {
            header.average_output = true;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match trees.last_mut() {
            Some(tree) => tree.push((key, value)),
            None => header.read(key, value)?,
        }
    }
    let features = header
        .max_feature_idx
        .ok_or("no max_feature_idx: not a LightGBM text model")?
        + 1;
    if header.num_class > 1 || header.num_tree_per_iteration > 1 {
        return Err("multi-class models are not supported".to_string());
    }
    let output = header.output()?;
    let mut builder = EnsembleBuilder::new(features, 0.0, output)?;
    if header.average_output {
        builder = builder.averaged(trees.len());
    }
    for (number, tree) in trees.iter().enumerate() {
        let nodes = source_nodes(tree).map_err(|e| format!("tree {number}: {e}"))?;
        builder.add_tree(&nodes)?;
    }
    Ok((header.feature_names, builder.build()?))
}

#[derive(Default)]
struct Header {
    max_feature_idx: Option<usize>,
    num_class: usize,
    num_tree_per_iteration: usize,
    objective: String,
    feature_names: Vec<String>,
    average_output: bool,
}

impl Header {
    fn read(&mut self, key: &str, value: &str) -> Result<(), String> {
        let number = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{key}='{v}' is not a number"))
        };
        match key {
            "max_feature_idx" => self.max_feature_idx = Some(number(value)?),
            "num_class" => self.num_class = number(value)?,
            "num_tree_per_iteration" => self.num_tree_per_iteration = number(value)?,
            "objective" => self.objective = value.to_string(),
            "feature_names" => self.feature_names = value.split(' ').map(str::to_string).collect(),
            "average_output" => self.average_output = true,
            _ => {}
        }
        Ok(())
    }

    /// The output transformation of the objective (`binary sigmoid:1`, `regression`, …).
    fn output(&self) -> Result<Output, String> {
        let mut words = self.objective.split(' ');
        let name = words.next().unwrap_or("");
        let parameter = |key: &str| {
            self.objective
                .split(' ')
                .find_map(|w| w.strip_prefix(key)?.strip_prefix(':')?.parse::<f64>().ok())
        };
        if self.objective.split(' ').any(|w| w == "sqrt") {
            return Err(format!(
                "objective '{}' (reg_sqrt) is not supported",
                self.objective
            ));
        }
        Ok(match name {
            "binary" => Output::Sigmoid {
                scale: parameter("sigmoid").unwrap_or(1.0),
            },
            "cross_entropy" | "xentropy" => Output::Sigmoid { scale: 1.0 },
            "regression" | "regression_l2" | "regression_l1" | "huber" | "fair" | "quantile"
            | "mape" | "lambdarank" | "rank_xendcg" | "" => Output::Identity,
            "poisson" | "gamma" | "tweedie" => Output::Exp,
            other => return Err(format!("objective '{other}' is not supported")),
        })
    }
}

fn source_nodes(tree: &[(&str, &str)]) -> Result<Vec<SourceNode>, String> {
    let field = |key: &str| tree.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let numbers = |key: &str| -> Result<Vec<f64>, String> {
        let Some(value) = field(key) else {
            return Err(format!("no {key}"));
        };
        value
            .split(' ')
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| format!("{key}: '{v}' is not a number"))
            })
            .collect()
    };
    let integers = |key: &str| -> Result<Vec<i64>, String> {
        let Some(value) = field(key) else {
            return Err(format!("no {key}"));
        };
        value
            .split(' ')
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{key}: '{v}' is not an integer"))
            })
            .collect()
    };
    if field("is_linear") == Some("1") {
        return Err("linear trees are not supported".to_string());
    }
    if field("num_cat").is_some_and(|n| n != "0") {
        return Err("categorical splits are not supported".to_string());
    }
    let leaves = numbers("leaf_value")?;
    let num_leaves: usize = field("num_leaves")
        .and_then(|n| n.parse().ok())
        .ok_or("no num_leaves")?;
    if leaves.len() != num_leaves {
        return Err(format!(
            "num_leaves={num_leaves} but {} leaf values",
            leaves.len()
        ));
    }
    if num_leaves == 1 {
        return Ok(vec![SourceNode::Leaf(leaves[0])]);
    }
    let split_feature = integers("split_feature")?;
    let threshold = numbers("threshold")?;
    let decision_type = integers("decision_type")?;
    let left_child = integers("left_child")?;
    let right_child = integers("right_child")?;
    let splits = num_leaves - 1;
    if [
        split_feature.len(),
        threshold.len(),
        decision_type.len(),
        left_child.len(),
        right_child.len(),
    ]
    .iter()
    .any(|&len| len != splits)
    {
        return Err(format!(
            "{num_leaves} leaves need {splits} splits, but the split arrays differ"
        ));
    }
    // Splits first (indices 0..splits), then leaves (splits + leaf index); LightGBM writes a
    // leaf child as !leaf_index.
    let child = |c: i64| -> Result<usize, String> {
        let index = if c >= 0 {
            c as usize
        } else {
            splits + (!c) as usize
        };
        if index >= splits + num_leaves {
            return Err(format!("child {c} does not exist"));
        }
        Ok(index)
    };
    let mut nodes = Vec::with_capacity(splits + num_leaves);
    for i in 0..splits {
        let decision = decision_type[i] as u32;
        if decision & CATEGORICAL != 0 {
            return Err("categorical splits are not supported".to_string());
        }
        let default_left = decision & DEFAULT_LEFT != 0;
        let (missing_left, zero_is_missing) = match (decision >> 2) & 3 {
            // None: a missing value is read as 0.
            0 => (0.0 <= threshold[i], false),
            // Zero: 0 (and NaN, read as 0) go the default way.
            1 => (default_left, true),
            // NaN: NaN goes the default way.
            2 => (default_left, false),
            other => return Err(format!("missing type {other} is unknown")),
        };
        let feature = usize::try_from(split_feature[i])
            .map_err(|_| "a negative feature index".to_string())?;
        nodes.push(SourceNode::Split {
            feature,
            threshold: threshold[i],
            missing_left,
            zero_is_missing,
            left: child(left_child[i])?,
            right: child(right_child[i])?,
        });
    }
    nodes.extend(leaves.into_iter().map(SourceNode::Leaf));
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// A random forest of two one-split trees on feature 0 (LightGBM writes
    /// `average_output` as a bare line).
    const FOREST: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nmax_feature_idx=0\n\
        objective=regression\naverage_output\nfeature_names=x\n\n\
        Tree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nthreshold=0.5\ndecision_type=2\n\
        left_child=-1\nright_child=-2\nleaf_value=1 3\nis_linear=0\n\n\
        Tree=1\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nthreshold=0.5\ndecision_type=2\n\
        left_child=-1\nright_child=-2\nleaf_value=5 7\nis_linear=0\n\nend of trees\n";

    #[test]
    fn a_random_forest_averages_its_trees() {
        let (names, ensemble) = parse(FOREST).unwrap();
        assert_eq!(names, ["x"]);
        let mut out = Vec::new();
        ensemble.predict(&[&[0.0, 1.0]], &mut out);
        assert_eq!(out, vec![3.0, 5.0]);
    }

    #[test]
    fn square_root_regression_is_refused() {
        let model = FOREST.replace("objective=regression", "objective=regression sqrt");
        assert!(parse(&model).unwrap_err().contains("reg_sqrt"));
    }
}
