//! Scoring functions: linear and logistic models from JSON or YAML files, and tree
//! ensembles from XGBoost and LightGBM model files.

pub mod linear;
pub mod linear_model;
pub mod score_tree;
pub mod tree;
