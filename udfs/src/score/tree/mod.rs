//! Tree-ensemble models: XGBoost's JSON format and LightGBM's text format, read into one
//! [`TreeEnsemble`] that scores rows in blocks.

pub mod ensemble;
pub mod lightgbm;
pub mod xgboost;

pub use ensemble::TreeEnsemble;

/// A tree model read from a file: its feature names (when it has them) and its ensemble.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeModel {
    /// Which library wrote the file.
    pub format: &'static str,
    /// The features by name, in the order the function takes them (may be empty).
    pub feature_names: Vec<String>,
    /// The trees.
    pub ensemble: TreeEnsemble,
}

impl TreeModel {
    /// Reads an XGBoost JSON model (a file that starts with `{`) or a LightGBM text model
    /// (one that starts with `tree`).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
        let start = text.trim_start();
        let (format, (feature_names, ensemble)) = if start.starts_with('{') {
            (
                "XGBoost",
                xgboost::parse(text).map_err(|e| format!("XGBoost model: {e}"))?,
            )
        } else if start.starts_with("tree") {
            (
                "LightGBM",
                lightgbm::parse(text).map_err(|e| format!("LightGBM model: {e}"))?,
            )
        } else {
            return Err("neither an XGBoost JSON model nor a LightGBM text model".to_string());
        };
        Ok(Self {
            format,
            feature_names,
            ensemble,
        })
    }

    /// The features for messages: their names when the file has them.
    pub fn describe_features(&self) -> String {
        let count = self.ensemble.features();
        if self.feature_names.len() == count {
            format!("{count} features ({})", self.feature_names.join(", "))
        } else {
            format!("{count} features")
        }
    }
}
