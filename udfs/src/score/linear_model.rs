//! The model file of `score_linear` and `score_logistic`: weights, a bias and, optionally,
//! the names of the features the weights belong to, as JSON or YAML.
//!
//! ```json
//! {"features": ["sessions_7d", "spend_30d", "has_avatar"],
//!  "weights": [0.42, 0.013, 1.1],
//!  "bias": -2.5}
//! ```

use serde::Deserialize;

/// A linear model as written in its file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearModel {
    /// The names of the features, in the order of the weights and of the function's
    /// arguments (documentation, and checked to have one name per weight).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// One weight per feature.
    pub weights: Vec<f64>,
    /// Added to the weighted sum.
    #[serde(default)]
    pub bias: f64,
    /// Free text about the model (who trained it, on what).
    #[serde(default)]
    pub description: Option<String>,
}

impl LinearModel {
    /// Parses and checks a model file.
    pub fn parse(path: &str, bytes: &[u8]) -> Result<Self, String> {
        let model: Self = crate::config_file::parse_json_or_yaml(path, bytes)?;
        if model.weights.is_empty() {
            return Err("'weights' is empty".to_string());
        }
        if let Some(names) = &model.features
            && names.len() != model.weights.len()
        {
            return Err(format!(
                "{} feature names but {} weights",
                names.len(),
                model.weights.len()
            ));
        }
        if let Some(i) = model.weights.iter().position(|w| !w.is_finite()) {
            return Err(format!("weight {} is not a finite number", i + 1));
        }
        if !model.bias.is_finite() {
            return Err("'bias' is not a finite number".to_string());
        }
        Ok(model)
    }

    /// The feature list for messages: the names when the file has them.
    pub fn describe_features(&self) -> String {
        match &self.features {
            Some(names) => format!("{} features ({})", names.len(), names.join(", ")),
            None => format!("{} features", self.weights.len()),
        }
    }
}
