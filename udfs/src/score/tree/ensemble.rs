//! A tree ensemble laid out for fast scoring: the nodes of every tree in one array, the
//! children of a node side by side (`left`, `left + 1`), and every leaf pointing at itself
//! so that each tree is walked a fixed number of steps, its depth, without a branch that
//! depends on the data. Rows are scored in blocks, several rows in lock-step per tree, so
//! the processor overlaps their walks.

/// One node. A split sends `x` left when `x <= threshold` and right otherwise; a value the
/// split counts as missing goes the side `MISSING_LEFT` says. A leaf is a split that always
/// goes left, to itself.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Node {
    /// Go left when `x <= threshold`.
    pub threshold: f64,
    /// The left child; the right child is `left + 1`.
    pub left: u32,
    /// The feature the split reads.
    pub feature: u16,
    /// `MISSING_LEFT`, `ZERO_IS_MISSING`.
    pub flags: u8,
}

/// A missing value (NaN, or zero where zero counts as missing) goes left.
pub const MISSING_LEFT: u8 = 1;
/// Values within ±1e-35 of zero count as missing (LightGBM's `missing_type=Zero`).
pub const ZERO_IS_MISSING: u8 = 2;
/// LightGBM's `kZeroThreshold` (1e-35 as an f32).
const ZERO_THRESHOLD: f64 = 1.000_000_018_002_509_5e-35;

/// How a sum of leaf values becomes the model's prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output {
    /// The sum itself (regression, ranking, raw margins).
    Identity,
    /// `1 / (1 + e^(-scale * sum))` (binary classification).
    Sigmoid { scale: f64 },
    /// `e^sum` (Poisson, gamma and Tweedie regression).
    Exp,
}

/// A tree ensemble, ready to score.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsemble {
    nodes: Vec<Node>,
    /// The value of each node that is a leaf (0 for splits).
    values: Vec<f64>,
    /// Each tree's root node and depth.
    trees: Vec<(u32, u8)>,
    /// Added to the sum of the leaves.
    base: f64,
    /// Divides the sum of the leaves (a random forest averages its trees).
    divisor: f64,
    output: Output,
    features: usize,
    /// Feature values are rounded to f32 before comparing (XGBoost's way).
    round_to_f32: bool,
    /// Leaves are summed in f32 (XGBoost's way).
    sum_in_f32: bool,
}

/// A tree as a model format describes it, before it is laid out.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceNode {
    /// A split, with the indices of its children in the same tree.
    Split {
        feature: usize,
        threshold: f64,
        missing_left: bool,
        zero_is_missing: bool,
        left: usize,
        right: usize,
    },
    /// A leaf.
    Leaf(f64),
}

/// Builds a [`TreeEnsemble`] tree by tree.
#[derive(Debug)]
pub struct EnsembleBuilder {
    ensemble: TreeEnsemble,
}

const MAX_DEPTH: usize = 64;

impl EnsembleBuilder {
    /// An empty ensemble over `features` features.
    pub fn new(features: usize, base: f64, output: Output) -> Result<Self, String> {
        if features > u16::MAX as usize {
            return Err(format!(
                "{features} features; at most {} are supported",
                u16::MAX
            ));
        }
        Ok(Self {
            ensemble: TreeEnsemble {
                nodes: Vec::new(),
                values: Vec::new(),
                trees: Vec::new(),
                base,
                divisor: 1.0,
                output,
                features,
                round_to_f32: false,
                sum_in_f32: false,
            },
        })
    }

    /// Compares and sums in f32, as XGBoost does.
    pub fn in_f32(mut self) -> Self {
        self.ensemble.round_to_f32 = true;
        self.ensemble.sum_in_f32 = true;
        self
    }

    /// Averages the trees instead of summing them.
    pub fn averaged(mut self, trees: usize) -> Self {
        self.ensemble.divisor = trees.max(1) as f64;
        self
    }

    /// Adds a tree given as nodes with node 0 its root.
    pub fn add_tree(&mut self, tree: &[SourceNode]) -> Result<(), String> {
        let number = self.ensemble.trees.len();
        if tree.is_empty() {
            return Err(format!("tree {number} has no nodes"));
        }
        let nodes = &mut self.ensemble.nodes;
        let values = &mut self.ensemble.values;
        let root = nodes.len();
        nodes.push(LEAF_PLACEHOLDER);
        values.push(0.0);
        // Breadth first: (source node, slot, depth).
        let mut queue = std::collections::VecDeque::from([(0usize, root, 0usize)]);
        let mut depth = 0;
        let mut visited = 0;
        while let Some((source, slot, level)) = queue.pop_front() {
            visited += 1;
            if visited > tree.len() {
                return Err(format!(
                    "tree {number} is not a tree (a node is reached twice)"
                ));
            }
            depth = depth.max(level);
            if level > MAX_DEPTH {
                return Err(format!("tree {number} is deeper than {MAX_DEPTH}"));
            }
            match tree.get(source) {
                Some(SourceNode::Leaf(value)) => {
                    nodes[slot] = Node {
                        threshold: f64::INFINITY,
                        left: slot as u32,
                        feature: 0,
                        flags: MISSING_LEFT,
                    };
                    values[slot] = *value;
                }
                Some(SourceNode::Split {
                    feature,
                    threshold,
                    missing_left,
                    zero_is_missing,
                    left,
                    right,
                }) => {
                    if *feature >= self.ensemble.features {
                        return Err(format!(
                            "tree {number} splits on feature {feature}, but the model has {} features",
                            self.ensemble.features
                        ));
                    }
                    if threshold.is_nan() {
                        return Err(format!("tree {number} has a split with a NaN threshold"));
                    }
                    let children = nodes.len();
                    nodes.extend([LEAF_PLACEHOLDER, LEAF_PLACEHOLDER]);
                    values.extend([0.0, 0.0]);
                    nodes[slot] = Node {
                        threshold: *threshold,
                        left: children as u32,
                        feature: *feature as u16,
                        flags: (*missing_left as u8) * MISSING_LEFT
                            | (*zero_is_missing as u8) * ZERO_IS_MISSING,
                    };
                    queue.push_back((*left, children, level + 1));
                    queue.push_back((*right, children + 1, level + 1));
                }
                None => {
                    return Err(format!(
                        "tree {number} refers to node {source}, which it does not have"
                    ));
                }
            }
        }
        if nodes.len() > u32::MAX as usize {
            return Err("the model has too many nodes".to_string());
        }
        self.ensemble.trees.push((root as u32, depth as u8));
        Ok(())
    }

    /// The finished ensemble.
    pub fn build(self) -> Result<TreeEnsemble, String> {
        if self.ensemble.trees.is_empty() {
            return Err("the model has no trees".to_string());
        }
        Ok(self.ensemble)
    }
}

const LEAF_PLACEHOLDER: Node = Node {
    threshold: f64::INFINITY,
    left: 0,
    feature: 0,
    flags: MISSING_LEFT,
};

/// Rows scored together: their features (row-major) stay in the first-level cache.
const BLOCK_ROWS: usize = 128;
/// Rows walked in lock-step through one tree.
const LANES: usize = 8;

impl TreeEnsemble {
    /// The number of features the model reads.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The number of trees.
    pub fn trees(&self) -> usize {
        self.trees.len()
    }

    /// The deepest tree's depth.
    pub fn depth(&self) -> usize {
        self.trees
            .iter()
            .map(|(_, d)| *d as usize)
            .max()
            .unwrap_or(0)
    }

    /// Predictions for `rows` rows whose features are given column by column; `out[i]`
    /// is the prediction of row `i`. NaN stands for a missing value.
    pub fn predict(&self, columns: &[&[f64]], out: &mut Vec<f64>) {
        let rows = columns.first().map_or(0, |c| c.len());
        out.clear();
        out.reserve(rows);
        let width = self.features.max(1);
        let mut block = vec![0.0; BLOCK_ROWS * width];
        let mut sums = [0.0f64; BLOCK_ROWS];
        let mut sums32 = [0.0f32; BLOCK_ROWS];
        for start in (0..rows).step_by(BLOCK_ROWS) {
            let n = BLOCK_ROWS.min(rows - start);
            for (f, column) in columns.iter().enumerate() {
                for r in 0..n {
                    let x = column[start + r];
                    block[r * width + f] = if self.round_to_f32 {
                        x as f32 as f64
                    } else {
                        x
                    };
                }
            }
            sums[..n].fill(0.0);
            sums32[..n].fill(self.base as f32);
            for &(root, depth) in &self.trees {
                let mut r = 0;
                while r + LANES <= n {
                    let leaves = self.walk::<LANES>(root, depth, &block[r * width..], width);
                    self.add_leaves(&leaves, &mut sums[r..], &mut sums32[r..]);
                    r += LANES;
                }
                while r < n {
                    let leaves = self.walk::<1>(root, depth, &block[r * width..], width);
                    self.add_leaves(&leaves, &mut sums[r..], &mut sums32[r..]);
                    r += 1;
                }
            }
            for r in 0..n {
                let sum = if self.sum_in_f32 {
                    sums32[r] as f64
                } else {
                    sums[r] / self.divisor + self.base
                };
                out.push(self.transform(sum));
            }
        }
    }

    /// The leaf each of `L` consecutive rows reaches in the tree at `root`.
    #[inline(always)]
    fn walk<const L: usize>(&self, root: u32, depth: u8, rows: &[f64], width: usize) -> [usize; L] {
        let mut at = [root as usize; L];
        for _ in 0..depth {
            for (lane, node_index) in at.iter_mut().enumerate() {
                let node = self.nodes[*node_index];
                let x = rows[lane * width + node.feature as usize];
                let missing = x.is_nan()
                    | ((node.flags & ZERO_IS_MISSING != 0) & (x.abs() <= ZERO_THRESHOLD));
                let left = if missing {
                    node.flags & MISSING_LEFT != 0
                } else {
                    x <= node.threshold
                };
                *node_index = node.left as usize + (!left) as usize;
            }
        }
        at
    }

    #[inline(always)]
    fn add_leaves(&self, leaves: &[usize], sums: &mut [f64], sums32: &mut [f32]) {
        if self.sum_in_f32 {
            for (sum, &leaf) in sums32.iter_mut().zip(leaves) {
                *sum += self.values[leaf] as f32;
            }
        } else {
            for (sum, &leaf) in sums.iter_mut().zip(leaves) {
                *sum += self.values[leaf];
            }
        }
    }

    fn transform(&self, sum: f64) -> f64 {
        match self.output {
            Output::Identity => sum,
            Output::Sigmoid { scale } => 1.0 / (1.0 + (-scale * sum).exp()),
            Output::Exp => sum.exp(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 1 ? (x1 <= 0 ? 1 : 2) : 3, missing x0 goes right.
    fn stump_tree() -> Vec<SourceNode> {
        vec![
            SourceNode::Split {
                feature: 0,
                threshold: 1.0,
                missing_left: false,
                zero_is_missing: false,
                left: 1,
                right: 2,
            },
            SourceNode::Split {
                feature: 1,
                threshold: 0.0,
                missing_left: true,
                zero_is_missing: false,
                left: 3,
                right: 4,
            },
            SourceNode::Leaf(3.0),
            SourceNode::Leaf(1.0),
            SourceNode::Leaf(2.0),
        ]
    }

    #[test]
    fn walks_to_the_leaf_of_each_row() {
        let mut builder = EnsembleBuilder::new(2, 0.5, Output::Identity).unwrap();
        builder.add_tree(&stump_tree()).unwrap();
        builder.add_tree(&[SourceNode::Leaf(10.0)]).unwrap();
        let ensemble = builder.build().unwrap();
        let x0: Vec<f64> = (0..20)
            .map(|i| {
                if i % 3 == 0 {
                    f64::NAN
                } else {
                    (i % 4) as f64 * 0.5
                }
            })
            .collect();
        let x1: Vec<f64> = (0..20)
            .map(|i| {
                if i % 5 == 0 {
                    f64::NAN
                } else {
                    (i % 3) as f64 - 1.0
                }
            })
            .collect();
        let mut out = Vec::new();
        ensemble.predict(&[&x0, &x1], &mut out);
        for i in 0..20 {
            let leaf = if x0[i].is_nan() || x0[i] > 1.0 {
                3.0
            } else if x1[i].is_nan() || x1[i] <= 0.0 {
                1.0
            } else {
                2.0
            };
            assert_eq!(out[i], 10.5 + leaf, "row {i}");
        }
    }

    #[test]
    fn rejects_malformed_trees() {
        let mut builder = EnsembleBuilder::new(1, 0.0, Output::Identity).unwrap();
        let looped = [SourceNode::Split {
            feature: 0,
            threshold: 0.0,
            missing_left: true,
            zero_is_missing: false,
            left: 0,
            right: 0,
        }];
        assert!(
            builder
                .add_tree(&looped)
                .unwrap_err()
                .contains("not a tree")
        );
        let wide = [SourceNode::Split {
            feature: 3,
            threshold: 0.0,
            missing_left: true,
            zero_is_missing: false,
            left: 1,
            right: 1,
        }];
        assert!(builder.add_tree(&wide).unwrap_err().contains("feature 3"));
    }
}
