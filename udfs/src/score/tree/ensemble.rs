//! A tree ensemble laid out for fast scoring: the nodes of every tree in one array, the
//! children of a node side by side (`left`, `left + 1`), and every leaf pointing at itself
//! so that each tree is walked a fixed number of steps, its depth. Each step is one load,
//! one comparison and one add: missing values are settled before the walk, by giving each
//! row every feature in two (or four) copies — NaN as -inf, NaN as +inf (and, for
//! LightGBM's `missing_type=Zero`, zero too) — and pointing each split at the copy that
//! sends a missing value its way. Rows are scored in blocks, sixteen rows in lock-step per
//! tree, so the processor overlaps their walks.

/// One node: a split sends `x` right when `x > threshold`. A leaf is a split that never
/// goes right, and its left child is itself.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Node {
    /// Go right when `x > threshold`.
    pub threshold: f64,
    /// The left child; the right child is `left + 1`.
    pub left: u32,
    /// Where in a row's expanded features the split reads `x`.
    pub column: u32,
}

/// How a missing value is seen by one split, as the copy of the feature it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum MissingCopy {
    /// NaN as -inf: missing goes left.
    MissingLeft = 0,
    /// NaN as +inf: missing goes right.
    MissingRight = 1,
    /// NaN and zero as -inf.
    ZeroMissingLeft = 2,
    /// NaN and zero as +inf.
    ZeroMissingRight = 3,
}

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
    /// Copies of each feature in an expanded row: 2, or 4 when a split counts zero as
    /// missing.
    copies: usize,
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
    /// The feature and copy each node reads, turned into columns by `build`.
    reads: Vec<(usize, MissingCopy)>,
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
                copies: 2,
            },
            reads: Vec::new(),
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
        let reads = &mut self.reads;
        let root = nodes.len();
        nodes.push(LEAF_PLACEHOLDER);
        values.push(0.0);
        reads.push((0, MissingCopy::MissingLeft));
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
                        column: 0,
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
                    let copy = match (*zero_is_missing, *missing_left) {
                        (false, true) => MissingCopy::MissingLeft,
                        (false, false) => MissingCopy::MissingRight,
                        (true, true) => MissingCopy::ZeroMissingLeft,
                        (true, false) => MissingCopy::ZeroMissingRight,
                    };
                    if *zero_is_missing {
                        self.ensemble.copies = 4;
                    }
                    let children = nodes.len();
                    nodes.extend([LEAF_PLACEHOLDER, LEAF_PLACEHOLDER]);
                    values.extend([0.0, 0.0]);
                    reads.extend([(0, MissingCopy::MissingLeft), (0, MissingCopy::MissingLeft)]);
                    nodes[slot] = Node {
                        threshold: *threshold,
                        left: children as u32,
                        column: 0,
                    };
                    reads[slot] = (*feature, copy);
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

    /// The finished ensemble, each split pointed at the copy of its feature it reads.
    pub fn build(mut self) -> Result<TreeEnsemble, String> {
        if self.ensemble.trees.is_empty() {
            return Err("the model has no trees".to_string());
        }
        let copies = self.ensemble.copies;
        for (node, (feature, copy)) in self.ensemble.nodes.iter_mut().zip(&self.reads) {
            node.column = (feature * copies + *copy as usize) as u32;
        }
        Ok(self.ensemble)
    }
}

const LEAF_PLACEHOLDER: Node = Node {
    threshold: f64::INFINITY,
    left: 0,
    column: 0,
};

/// Rows scored together: their features (row-major) stay in the first-level cache.
const BLOCK_ROWS: usize = 128;
/// Rows walked in lock-step through one tree.
const LANES: usize = 16;

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
        let copies = self.copies;
        let width = self.features.max(1) * copies;
        let mut block = vec![0.0; BLOCK_ROWS * width];
        let mut sums = [0.0f64; BLOCK_ROWS];
        let mut sums32 = [0.0f32; BLOCK_ROWS];
        for start in (0..rows).step_by(BLOCK_ROWS) {
            let n = BLOCK_ROWS.min(rows - start);
            for (f, column) in columns.iter().enumerate() {
                for r in 0..n {
                    let x = column[start + r];
                    let x = if self.round_to_f32 {
                        x as f32 as f64
                    } else {
                        x
                    };
                    let at = r * width + f * copies;
                    let (low, high) = if x.is_nan() {
                        (f64::NEG_INFINITY, f64::INFINITY)
                    } else {
                        (x, x)
                    };
                    block[at] = low;
                    block[at + 1] = high;
                    if copies == 4 {
                        let zero = x.is_nan() || x.abs() <= ZERO_THRESHOLD;
                        block[at + 2] = if zero { f64::NEG_INFINITY } else { x };
                        block[at + 3] = if zero { f64::INFINITY } else { x };
                    }
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

    /// The leaf each of `L` consecutive rows (expanded, `width` values each) reaches in
    /// the tree at `root`.
    #[inline(always)]
    fn walk<const L: usize>(&self, root: u32, depth: u8, rows: &[f64], width: usize) -> [usize; L] {
        assert!(rows.len() >= L * width);
        let nodes = &self.nodes[..];
        let mut at = [root as usize; L];
        for _ in 0..depth {
            for (lane, node_index) in at.iter_mut().enumerate() {
                // SAFETY: `EnsembleBuilder` gives every node children inside `nodes` (a leaf
                // points at itself) and a column below the expanded row's `width`; `rows`
                // holds `L` rows of `width` values (asserted above).
                let (node, x) = unsafe {
                    let node = nodes.get_unchecked(*node_index);
                    (
                        node,
                        *rows.get_unchecked(lane * width + node.column as usize),
                    )
                };
                *node_index = node.left as usize + (x > node.threshold) as usize;
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
    fn zero_can_count_as_missing() {
        // LightGBM's missing_type=Zero: zero and NaN go the default way (right here), even
        // though 0 <= 0.5.
        let mut builder = EnsembleBuilder::new(1, 0.0, Output::Identity).unwrap();
        let tree = [
            SourceNode::Split {
                feature: 0,
                threshold: 0.5,
                missing_left: false,
                zero_is_missing: true,
                left: 1,
                right: 2,
            },
            SourceNode::Leaf(1.0),
            SourceNode::Leaf(2.0),
        ];
        builder.add_tree(&tree).unwrap();
        let ensemble = builder.build().unwrap();
        let mut out = Vec::new();
        ensemble.predict(&[&[0.0, 1e-36, f64::NAN, 0.25, 0.75, -3.0]], &mut out);
        assert_eq!(out, vec![2.0, 2.0, 2.0, 1.0, 2.0, 1.0]);
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
