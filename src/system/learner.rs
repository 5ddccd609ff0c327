//! The learner of meta-learning (spec 7.1): a small tanh MLP `g_phi(x)` whose flattened weights
//! phi are the inner state, with its loss on a set of points (mean squared error for
//! regression, softmax cross-entropy for classification), the gradient and the exact
//! Hessian-vector product (Pearlmutter's R-operator, forward over reverse).
//!
//! ```text
//! a_0 = x,  z_l = W_l a_{l-1} + b_l,  a_l = tanh(z_l) (l < last),  g_phi(x) = z_last
//! squared error:  L(phi) = 1/P sum_p |g_phi(x_p) - y_p|^2
//! cross-entropy:  L(phi) = 1/P sum_p sum_k y_pk (logsumexp(g_phi(x_p)) - g_phi(x_p)_k)
//! ```
//!
//! phi holds `W_1, b_1, W_2, b_2, ...` in turn, each W column-major (nalgebra's layout).
//! tanh rather than MAML's ReLU: the inner loss is then smooth, so its Hessian exists
//! everywhere and the finite-difference checks hold.

use crate::error::{invalid, LcsimError, Result};
use crate::numerics::linalg::count_product;
use crate::system::loss::{log_sum_exp, predicted_classes, softmax};
use nalgebra::{DMatrix, DVector};

/// The loss of the learner's outputs on a set of points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LearnerLoss {
    /// `1/P sum_p |g(x_p) - y_p|^2` (regression).
    #[default]
    SquaredError,
    /// `1/P sum_p sum_k y_pk (logsumexp(g(x_p)) - g(x_p)_k)` (classification, y one-hot).
    CrossEntropy,
}

/// An MLP of the given layer sizes (input first, output last) and its loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    sizes: Vec<usize>,
    loss: LearnerLoss,
}

/// The weights of one layer, viewed from phi.
struct Layer {
    w: DMatrix<f64>,
    b: DVector<f64>,
}

/// Forward-pass values of every layer: `a[0] = x`, `a[l] = tanh(z_l)`, the output last.
struct Forward {
    a: Vec<DMatrix<f64>>,
}

impl Mlp {
    /// An MLP with layer sizes `sizes` (at least input and output, all > 0).
    pub fn new(sizes: Vec<usize>) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(invalid(
                "meta.learner_sizes",
                format!("{sizes:?}"),
                "at least two layer sizes (input, output), all > 0",
            ));
        }
        Ok(Mlp {
            sizes,
            loss: LearnerLoss::SquaredError,
        })
    }

    /// The same MLP with the loss `loss`.
    pub fn with_loss(mut self, loss: LearnerLoss) -> Self {
        self.loss = loss;
        self
    }

    /// The loss on a set of points.
    pub fn loss_kind(&self) -> LearnerLoss {
        self.loss
    }

    /// Layer sizes, input first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }
    /// Dimension of one input point.
    pub fn input_dim(&self) -> usize {
        self.sizes[0]
    }
    /// Dimension of one output.
    pub fn output_dim(&self) -> usize {
        *self.sizes.last().unwrap()
    }
    /// Number of weights and biases (the dimension of phi).
    pub fn num_params(&self) -> usize {
        self.sizes.windows(2).map(|w| w[1] * w[0] + w[1]).sum()
    }

    /// PyTorch-style initial weights from `seed`: every entry of `W_l` and `b_l` uniform in
    /// `+-1/sqrt(fan_in)`.
    pub fn initial_params(&self, seed: u64) -> DVector<f64> {
        let mut rng = crate::numerics::rng::Rng::seed_from_u64(seed);
        let mut phi = Vec::with_capacity(self.num_params());
        for s in self.sizes.windows(2) {
            let bound = 1.0 / (s[0] as f64).sqrt();
            for _ in 0..(s[0] + 1) * s[1] {
                phi.push(rng.uniform_range(-bound, bound));
            }
        }
        DVector::from_vec(phi)
    }

    fn layers(&self, phi: &[f64]) -> Vec<Layer> {
        let mut k = 0;
        self.sizes
            .windows(2)
            .map(|s| {
                let (n_in, n_out) = (s[0], s[1]);
                let w = DMatrix::from_column_slice(n_out, n_in, &phi[k..k + n_out * n_in]);
                k += n_out * n_in;
                let b = DVector::from_column_slice(&phi[k..k + n_out]);
                k += n_out;
                Layer { w, b }
            })
            .collect()
    }

    fn flatten(grads: &[Layer]) -> DVector<f64> {
        let mut out = Vec::new();
        for g in grads {
            out.extend_from_slice(g.w.as_slice());
            out.extend_from_slice(g.b.as_slice());
        }
        DVector::from_vec(out)
    }

    fn forward(&self, layers: &[Layer], x: &DMatrix<f64>) -> Forward {
        let mut a = vec![x.clone()];
        for (l, layer) in layers.iter().enumerate() {
            let mut z = counted(&layer.w, &a[l]);
            for mut c in z.column_iter_mut() {
                c += &layer.b;
            }
            if l + 1 < layers.len() {
                z.apply(|v| *v = v.tanh());
            }
            a.push(z);
        }
        Forward { a }
    }

    fn check(&self, phi: &[f64], x: &DMatrix<f64>, y: Option<&DMatrix<f64>>) -> Result<()> {
        let shape = |field: &str, expected: String, found: String| LcsimError::Shape {
            field: field.into(),
            expected,
            found,
        };
        if phi.len() != self.num_params() {
            return Err(shape(
                "phi",
                format!("{} learner weights", self.num_params()),
                phi.len().to_string(),
            ));
        }
        if x.nrows() != self.input_dim() {
            return Err(shape(
                "learner input",
                format!("{} rows", self.input_dim()),
                x.nrows().to_string(),
            ));
        }
        if let Some(y) = y {
            if y.nrows() != self.output_dim() || y.ncols() != x.ncols() {
                return Err(shape(
                    "learner targets",
                    format!("{} x {}", self.output_dim(), x.ncols()),
                    format!("{} x {}", y.nrows(), y.ncols()),
                ));
            }
        }
        Ok(())
    }

    /// The prediction `g_phi(x)` (output_dim x P) at points x (input_dim x P).
    pub fn predict(&self, phi: &[f64], x: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        self.check(phi, x, None)?;
        Ok(self.forward(&self.layers(phi), x).a.pop().unwrap())
    }

    /// `L(phi)`: the mean squared error or cross-entropy (see the module doc).
    pub fn loss(&self, phi: &[f64], x: &DMatrix<f64>, y: &DMatrix<f64>) -> Result<f64> {
        self.check(phi, x, Some(y))?;
        let out = self.forward(&self.layers(phi), x).a.pop().unwrap();
        let p = x.ncols().max(1) as f64;
        Ok(match self.loss {
            LearnerLoss::SquaredError => (out - y).norm_squared() / p,
            LearnerLoss::CrossEntropy => {
                let mut total = 0.0;
                for (o, t) in out.column_iter().zip(y.column_iter()) {
                    let lse = log_sum_exp(o.as_slice());
                    total += t
                        .iter()
                        .zip(o.iter())
                        .map(|(t, o)| t * (lse - o))
                        .sum::<f64>();
                }
                total / p
            }
        })
    }

    /// The share of points whose largest output is the largest target entry.
    pub fn accuracy(&self, phi: &[f64], x: &DMatrix<f64>, y: &DMatrix<f64>) -> Result<f64> {
        self.check(phi, x, Some(y))?;
        let out = self.forward(&self.layers(phi), x).a.pop().unwrap();
        let hits = predicted_classes(&out)
            .iter()
            .zip(predicted_classes(y))
            .filter(|(o, t)| **o == *t)
            .count();
        Ok(hits as f64 / x.ncols().max(1) as f64)
    }

    /// `grad_phi L(phi)` by backpropagation.
    pub fn gradient(
        &self,
        phi: &[f64],
        x: &DMatrix<f64>,
        y: &DMatrix<f64>,
    ) -> Result<DVector<f64>> {
        Ok(self.gradient_and_hvp(phi, x, y, None)?.0)
    }

    /// The exact Hessian-vector product `(d^2 L / d phi^2) v` (R-operator).
    pub fn hvp(
        &self,
        phi: &[f64],
        x: &DMatrix<f64>,
        y: &DMatrix<f64>,
        v: &[f64],
    ) -> Result<DVector<f64>> {
        Ok(self.gradient_and_hvp(phi, x, y, Some(v))?.1.unwrap())
    }

    /// `(grad L, H v)`: backpropagation and, with v, its R-operator alongside:
    ///
    /// ```text
    /// R z_l = R W_l a_{l-1} + W_l R a_{l-1} + R b_l,   R a_l = tanh'(z_l) R z_l
    /// squared error: delta_last = 2/P (out - y),       R delta_last = 2/P R out
    /// cross-entropy: delta_last = 1/P (sum(y) p - y),  R delta_last = sum(y)/P (p * R out - p (p . R out))
    ///                (p = softmax(out) per point)
    /// g_l = W_{l+1}^T delta_{l+1},  delta_l = tanh'(z_l) g_l
    /// R delta_l = tanh''(z_l) R z_l g_l + tanh'(z_l) (R W_{l+1}^T delta_{l+1} + W_{l+1}^T R delta_{l+1})
    /// dW_l = delta_l a_{l-1}^T,     R dW_l = R delta_l a_{l-1}^T + delta_l R a_{l-1}^T
    /// ```
    pub fn gradient_and_hvp(
        &self,
        phi: &[f64],
        x: &DMatrix<f64>,
        y: &DMatrix<f64>,
        v: Option<&[f64]>,
    ) -> Result<(DVector<f64>, Option<DVector<f64>>)> {
        self.check(phi, x, Some(y))?;
        if let Some(v) = v {
            if v.len() != phi.len() {
                return Err(LcsimError::Shape {
                    field: "hvp direction".into(),
                    expected: phi.len().to_string(),
                    found: v.len().to_string(),
                });
            }
        }
        let layers = self.layers(phi);
        let rlayers = v.map(|v| self.layers(v));
        let fwd = self.forward(&layers, x);
        let n = layers.len();
        let p = x.ncols().max(1) as f64;
        // R a_l for l = 0..=n (R a_0 = 0).
        let ra: Option<Vec<DMatrix<f64>>> = rlayers.as_ref().map(|rl| {
            let mut ra = vec![DMatrix::zeros(x.nrows(), x.ncols())];
            for l in 0..n {
                let mut rz = counted(&rl[l].w, &fwd.a[l]) + counted(&layers[l].w, &ra[l]);
                for mut c in rz.column_iter_mut() {
                    c += &rl[l].b;
                }
                if l + 1 < n {
                    rz.zip_apply(&fwd.a[l + 1], |r, t| *r *= 1.0 - t * t);
                }
                ra.push(rz);
            }
            ra
        });
        let (mut delta, mut rdelta) =
            self.output_deltas(&fwd.a[n], y, ra.as_ref().map(|ra| &ra[n]), p);
        let mut grads = Vec::with_capacity(n);
        let mut rgrads = Vec::with_capacity(n);
        for l in (0..n).rev() {
            grads.push(Layer {
                w: counted(&delta, &fwd.a[l].transpose()),
                b: delta.column_sum(),
            });
            if let (Some(rd), Some(ra)) = (&rdelta, &ra) {
                rgrads.push(Layer {
                    w: counted(rd, &fwd.a[l].transpose()) + counted(&delta, &ra[l].transpose()),
                    b: rd.column_sum(),
                });
            }
            if l == 0 {
                break;
            }
            // Into layer l's hidden units (a[l] = tanh(z_l)).
            let g = counted(&layers[l].w.transpose(), &delta);
            let t = &fwd.a[l];
            let new_delta = g.zip_map(t, |g, t| g * (1.0 - t * t));
            if let (Some(rd), Some(ra), Some(rl)) = (&rdelta, &ra, &rlayers) {
                let rg =
                    counted(&rl[l].w.transpose(), &delta) + counted(&layers[l].w.transpose(), rd);
                // tanh''(z) R z = -2 t tanh'(z) R z = -2 t R a_l.
                let mut rd_new = rg.zip_map(t, |rg, t| rg * (1.0 - t * t));
                for ((r, &g), (&t, &rat)) in rd_new
                    .iter_mut()
                    .zip(g.iter())
                    .zip(t.iter().zip(ra[l].iter()))
                {
                    *r += -2.0 * t * rat * g;
                }
                rdelta = Some(rd_new);
            }
            delta = new_delta;
        }
        grads.reverse();
        rgrads.reverse();
        let hv = rlayers.map(|_| Self::flatten(&rgrads));
        Ok((Self::flatten(&grads), hv))
    }

    /// `dL/d out` and its R-operator image for the outputs `out` (R out = `rout`).
    fn output_deltas(
        &self,
        out: &DMatrix<f64>,
        y: &DMatrix<f64>,
        rout: Option<&DMatrix<f64>>,
        p: f64,
    ) -> (DMatrix<f64>, Option<DMatrix<f64>>) {
        match self.loss {
            LearnerLoss::SquaredError => ((out - y) * (2.0 / p), rout.map(|r| r * (2.0 / p))),
            LearnerLoss::CrossEntropy => {
                let soft = softmax(out);
                let mass = DMatrix::from_fn(1, y.ncols(), |_, j| y.column(j).sum());
                let mut delta = &soft - y;
                for (j, mut c) in delta.column_iter_mut().enumerate() {
                    c += soft.column(j) * (mass[j] - 1.0);
                    c /= p;
                }
                let rdelta = rout.map(|r| {
                    let mut rd = soft.component_mul(r);
                    for (j, mut c) in rd.column_iter_mut().enumerate() {
                        let dot = soft.column(j).dot(&r.column(j));
                        c.axpy(-dot, &soft.column(j), 1.0);
                        c *= mass[j] / p;
                    }
                    rd
                });
                (delta, rdelta)
            }
        }
    }
}

/// `a b` by nalgebra (the learner's arithmetic), counted for `lcsim throughput`.
fn counted(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
    count_product(a.nrows(), b.ncols(), a.ncols());
    a * b
}
