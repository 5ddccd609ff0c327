//! Named parameter tensors (rows = postsynaptic), shared by models, the plasticity
//! rule, the baselines and the optimizers so that updates and gradients compare directly.

use nalgebra::DMatrix;

/// An ordered list of named matrices (biases are n x 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    entries: Vec<(String, DMatrix<f64>)>,
}

impl Params {
    /// Parameters from (name, tensor) pairs.
    pub fn new(entries: Vec<(String, DMatrix<f64>)>) -> Self {
        Params { entries }
    }

    /// Checks that these parameters have `layout`'s tensors (names and shapes, in order) and
    /// are finite; errors name the tensor.
    pub fn ensure_layout(&self, layout: &Params) -> crate::error::Result<()> {
        use crate::error::LcsimError;
        if self.len() != layout.len() {
            let names: Vec<&str> = layout.names().collect();
            return Err(LcsimError::Shape {
                field: "params".into(),
                expected: format!("{} tensors {names:?}", layout.len()),
                found: format!("{} tensors", self.len()),
            });
        }
        for ((name, m), (expected, l)) in self.iter().zip(layout.iter()) {
            if name != expected || m.shape() != l.shape() {
                return Err(LcsimError::Shape {
                    field: expected.into(),
                    expected: format!("{expected}: {} x {}", l.nrows(), l.ncols()),
                    found: format!("{name}: {} x {}", m.nrows(), m.ncols()),
                });
            }
            crate::error::ensure_finite(name, m.as_slice())?;
        }
        Ok(())
    }

    /// Same names and shapes, all zero.
    pub fn zeros_like(&self) -> Self {
        self.map(|m| DMatrix::zeros(m.nrows(), m.ncols()))
    }

    /// Applies `f` to every tensor.
    pub fn map(&self, f: impl Fn(&DMatrix<f64>) -> DMatrix<f64>) -> Self {
        Params::new(
            self.entries
                .iter()
                .map(|(n, m)| (n.clone(), f(m)))
                .collect(),
        )
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_scalars(&self) -> usize {
        self.entries.iter().map(|(_, m)| m.len()).sum()
    }

    /// Tensor names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// (name, tensor) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &DMatrix<f64>)> {
        self.entries.iter().map(|(n, m)| (n.as_str(), m))
    }

    /// Mutable tensors in order.
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = &mut DMatrix<f64>> {
        self.entries.iter_mut().map(|(_, m)| m)
    }

    /// The i-th tensor.
    pub fn tensor(&self, i: usize) -> &DMatrix<f64> {
        &self.entries[i].1
    }

    /// The i-th tensor, mutably.
    pub fn tensor_mut(&mut self, i: usize) -> &mut DMatrix<f64> {
        &mut self.entries[i].1
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&DMatrix<f64>> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }

    /// `self += a * other` (same layout).
    pub fn axpy(&mut self, a: f64, other: &Params) {
        for ((_, m), (_, o)) in self.entries.iter_mut().zip(&other.entries) {
            *m += o * a;
        }
    }

    /// `self *= a`.
    pub fn scale(&mut self, a: f64) {
        for (_, m) in &mut self.entries {
            *m *= a;
        }
    }

    /// Zeroes every entry where the 0/1 `mask` (same layout) is zero (to +0.0, not -0.0).
    pub fn mask_with(&mut self, mask: &Params) {
        for ((_, m), (_, k)) in self.entries.iter_mut().zip(&mask.entries) {
            m.zip_apply(k, |v, k| {
                if k == 0.0 {
                    *v = 0.0
                }
            });
        }
    }

    /// Euclidean inner product over all tensors.
    pub fn dot(&self, other: &Params) -> f64 {
        self.entries
            .iter()
            .zip(&other.entries)
            .map(|((_, a), (_, b))| a.dot(b))
            .sum()
    }

    /// Euclidean norm over all tensors.
    pub fn norm(&self) -> f64 {
        self.dot(self).sqrt()
    }

    /// Cosine similarity `<a, b> / (|a| |b|)` over all tensors (0 when either is zero).
    pub fn cosine(&self, other: &Params) -> f64 {
        let den = self.norm() * other.norm();
        if den > 0.0 {
            self.dot(other) / den
        } else {
            0.0
        }
    }

    /// True when every entry is finite.
    pub fn is_finite(&self) -> bool {
        self.entries
            .iter()
            .all(|(_, m)| m.iter().all(|v| v.is_finite()))
    }

    /// Flat view of all entries in tensor order, column-major within a tensor
    /// (the order used for finite-difference checks).
    pub fn flat_get(&self, k: usize) -> f64 {
        let (i, j) = self.locate(k);
        self.entries[i].1.as_slice()[j]
    }

    /// Sets flat entry `k` (see [`Params::flat_get`]).
    pub fn flat_set(&mut self, k: usize, value: f64) {
        let (i, j) = self.locate(k);
        self.entries[i].1.as_mut_slice()[j] = value;
    }

    /// (tensor index, offset) of flat entry `k`.
    pub fn locate(&self, mut k: usize) -> (usize, usize) {
        for (i, (_, m)) in self.entries.iter().enumerate() {
            if k < m.len() {
                return (i, k);
            }
            k -= m.len();
        }
        panic!("flat parameter index out of range");
    }
}
