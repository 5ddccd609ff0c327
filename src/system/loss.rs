//! The loss on the state (spec 1.3): `L(phi_R, target)` on the loss rows R of phi that a
//! system names, with its gradient and Hessian-vector products, column by column (one
//! column per sample). [`Loss`] is the classification/regression loss of a readout.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// A loss on the loss rows `y = phi_R` of a state (n_R x B) against targets (one column per
/// sample).
pub trait StateLoss: Send + Sync + Debug {
    /// Name as used in configs and files.
    fn name(&self) -> String;
    /// Per-sample loss values (one per column), unscaled.
    fn values(&self, y: &DMatrix<f64>, target: &DMatrix<f64>) -> Vec<f64>;
    /// `grad_y L` (n_R x B).
    fn gradient(&self, y: &DMatrix<f64>, target: &DMatrix<f64>) -> DMatrix<f64>;
    /// `(d^2 L / dy^2) dy` (n_R x B).
    fn hessian_vector(
        &self,
        y: &DMatrix<f64>,
        target: &DMatrix<f64>,
        dy: &DMatrix<f64>,
    ) -> DMatrix<f64>;
    /// Whether [`StateLoss::accuracies`] mean something (a classification loss); accuracies
    /// are NaN otherwise.
    fn classifies(&self) -> bool {
        true
    }
    /// Per-sample accuracy (one per column): 1 when the largest y entry is the largest target
    /// entry, else 0 (a few-shot task: the share of its query points so classified).
    fn accuracies(&self, y: &DMatrix<f64>, target: &DMatrix<f64>) -> Vec<f64> {
        predicted_classes(y)
            .iter()
            .zip(predicted_classes(target))
            .map(|(p, t)| if *p == t { 1.0 } else { 0.0 })
            .collect()
    }
}

impl StateLoss for Loss {
    fn name(&self) -> String {
        Loss::name(*self).to_string()
    }
    fn values(&self, y: &DMatrix<f64>, target: &DMatrix<f64>) -> Vec<f64> {
        Loss::values(*self, y, target)
    }
    fn gradient(&self, y: &DMatrix<f64>, target: &DMatrix<f64>) -> DMatrix<f64> {
        Loss::gradient(*self, y, target)
    }
    fn hessian_vector(
        &self,
        y: &DMatrix<f64>,
        _target: &DMatrix<f64>,
        dy: &DMatrix<f64>,
    ) -> DMatrix<f64> {
        Loss::hessian_vector(*self, y, dy)
    }
}

/// The loss `L(y, target)` of one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Cross-entropy of softmax(y) against a target distribution (one-hot labels).
    #[default]
    CrossEntropy,
    /// Squared error 1/2 |y - target|^2.
    SquaredError,
}

impl Loss {
    /// Per-sample loss values (one per column), unscaled.
    pub fn values(self, y: &DMatrix<f64>, target: &DMatrix<f64>) -> Vec<f64> {
        (0..y.ncols())
            .map(|j| match self {
                Loss::CrossEntropy => {
                    let col = y.column(j);
                    let lse = log_sum_exp(col.as_slice());
                    col.iter()
                        .zip(target.column(j).iter())
                        .map(|(yi, ti)| ti * (lse - yi))
                        .sum()
                }
                Loss::SquaredError => 0.5 * (y.column(j) - target.column(j)).norm_squared(),
            })
            .collect()
    }

    /// Gradient with respect to y: `softmax(y) - t` (cross-entropy, targets summing to 1)
    /// or `y - t` (squared error).
    pub fn gradient(self, y: &DMatrix<f64>, target: &DMatrix<f64>) -> DMatrix<f64> {
        match self {
            Loss::CrossEntropy => softmax(y) - target,
            Loss::SquaredError => y - target,
        }
    }

    /// Hessian-vector product `(d^2 L / dy^2) dy`: `p * dy - p (p . dy)` for cross-entropy,
    /// `dy` for squared error.
    pub fn hessian_vector(self, y: &DMatrix<f64>, dy: &DMatrix<f64>) -> DMatrix<f64> {
        match self {
            Loss::CrossEntropy => {
                let p = softmax(y);
                let mut out = p.component_mul(dy);
                for j in 0..y.ncols() {
                    let pd = p.column(j).dot(&dy.column(j));
                    out.column_mut(j).axpy(-pd, &p.column(j), 1.0);
                }
                out
            }
            Loss::SquaredError => dy.clone(),
        }
    }

    /// Name as used in configs and files.
    pub fn name(self) -> &'static str {
        match self {
            Loss::CrossEntropy => "cross-entropy",
            Loss::SquaredError => "squared-error",
        }
    }
}

/// Column-wise softmax, computed stably.
pub fn softmax(y: &DMatrix<f64>) -> DMatrix<f64> {
    let mut p = y.clone();
    for mut col in p.column_iter_mut() {
        let m = col.max();
        col.apply(|v| *v = (*v - m).exp());
        let s = col.sum();
        col /= s;
    }
    p
}

pub(crate) fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// One-hot targets (n_classes x B) from integer labels.
pub fn one_hot(labels: &[usize], n_classes: usize) -> DMatrix<f64> {
    let mut t = DMatrix::zeros(n_classes, labels.len());
    for (j, &l) in labels.iter().enumerate() {
        t[(l, j)] = 1.0;
    }
    t
}

/// Index of the largest output per column (the predicted class).
pub fn predicted_classes(y: &DMatrix<f64>) -> Vec<usize> {
    y.column_iter().map(|c| c.argmax().0).collect()
}
