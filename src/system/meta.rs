//! Meta-learning by least control (spec 7.1): the inner fine-tuning of a learner on a task's
//! support set as an equilibrium system, batched over tasks (one column per task, phi = the
//! learner's flattened weights for that task), and the query loss the controller reads.
//!
//! ```text
//! tau dphi/dt = f(phi, theta) = -grad L_in(phi) - lambda (phi - theta)
//! J_f = -(H_in(phi) + lambda I)  (symmetric),   (d_theta f)^T psi = lambda psi
//! ```
//!
//! theta (n x 1) is shared by all tasks, so `param_vjp` sums `lambda psi` over the columns.
//! A task column x holds its support set `(x_1..x_K, y_1..y_K)`; the drive appends it below
//! `lambda theta`, so `vector_field_driven` sees the data (the drive is (n + input_dim) x B).
//! The control enters every component ([`ControlEntry::Everywhere`]).

use crate::error::{ensure_positive, LcsimError, Result};
use crate::system::learner::{LearnerLoss, Mlp};
use crate::system::loss::StateLoss;
use crate::system::params::Params;
use crate::system::{ControlEntry, EquilibriumSystem, InnerProblem};
use nalgebra::{DMatrix, DVector};
use std::ops::Range;

/// Splits a column of points `(x_1..x_P, y_1..y_P)` into x (in x P) and y (out x P).
pub fn split_points(mlp: &Mlp, col: &[f64]) -> (DMatrix<f64>, DMatrix<f64>) {
    let (i, o) = (mlp.input_dim(), mlp.output_dim());
    let p = col.len() / (i + o);
    (
        DMatrix::from_column_slice(i, p, &col[..i * p]),
        DMatrix::from_column_slice(o, p, &col[i * p..(i + o) * p]),
    )
}

/// Packs points x (in x P) and y (out x P) into one column `(x_1..x_P, y_1..y_P)`.
pub fn pack_points(x: &DMatrix<f64>, y: &DMatrix<f64>) -> DVector<f64> {
    DVector::from_iterator(x.len() + y.len(), x.iter().chain(y.iter()).cloned())
}

/// The inner problem of meta-learning on a batch of tasks.
#[derive(Clone, Debug)]
pub struct MetaSystem {
    learner: Mlp,
    lambda: f64,
    support: usize,
    /// theta: the shared initialisation (n x 1).
    params: Params,
}

/// The linearisation: phi and the support sets, for Hessian-vector products.
pub struct MetaLinearization {
    phi: DMatrix<f64>,
    x: DMatrix<f64>,
}

impl MetaSystem {
    /// The inner problem of `learner` with pull `lambda` (> 0) towards theta, on tasks of
    /// `support` points (K > 0).
    pub fn new(learner: Mlp, lambda: f64, support: usize, theta: DMatrix<f64>) -> Result<Self> {
        ensure_positive("meta.lambda", lambda)?;
        if support == 0 {
            return Err(crate::error::invalid("meta.support", 0, "K >= 1"));
        }
        if theta.shape() != (learner.num_params(), 1) {
            return Err(LcsimError::Shape {
                field: "theta".into(),
                expected: format!("{} x 1", learner.num_params()),
                found: format!("{} x {}", theta.nrows(), theta.ncols()),
            });
        }
        Ok(MetaSystem {
            learner,
            lambda,
            support,
            params: Params::new(vec![("theta".into(), theta)]),
        })
    }

    /// The learner.
    pub fn learner(&self) -> &Mlp {
        &self.learner
    }
    /// The pull lambda towards theta.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }
    /// theta (n x 1).
    pub fn theta(&self) -> &DMatrix<f64> {
        self.params.tensor(0)
    }

    /// The support set of task column j.
    fn task(&self, x: &DMatrix<f64>, j: usize) -> (DMatrix<f64>, DMatrix<f64>) {
        split_points(&self.learner, x.column(j).as_slice())
    }

    /// `-(H_in(phi_j) + lambda I) v_j` for every column j, with optionally `-grad L_in` too.
    fn products(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        v: &DMatrix<f64>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        let n = self.state_dim();
        let mut grad = DMatrix::zeros(n, phi.ncols());
        let mut hv = DMatrix::zeros(n, phi.ncols());
        for j in 0..phi.ncols() {
            let (xs, ys) = self.task(x, j);
            let (g, h) = self
                .learner
                .gradient_and_hvp(
                    phi.column(j).as_slice(),
                    &xs,
                    &ys,
                    Some(v.column(j).as_slice()),
                )
                .expect("shapes checked by the system");
            grad.set_column(j, &g);
            hv.set_column(j, &(h.unwrap() + v.column(j) * self.lambda));
        }
        (grad, -hv)
    }

    /// The inner loss `L_in(phi_j)` of every task column j.
    pub fn inner_losses(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>) -> Vec<f64> {
        (0..phi.ncols())
            .map(|j| {
                let (xs, ys) = self.task(x, j);
                self.learner
                    .loss(phi.column(j).as_slice(), &xs, &ys)
                    .expect("shapes checked by the system")
            })
            .collect()
    }
}

impl EquilibriumSystem for MetaSystem {
    type Linearization = MetaLinearization;

    fn state_dim(&self) -> usize {
        self.learner.num_params()
    }
    fn input_dim(&self) -> usize {
        self.support * (self.learner.input_dim() + self.learner.output_dim())
    }
    fn loss_rows(&self) -> Range<usize> {
        0..self.state_dim()
    }
    fn control_entry(&self) -> ControlEntry {
        ControlEntry::Everywhere
    }
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
    /// `(lambda theta; x)`: the pull and, below it, the support sets.
    fn input_drive(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let n = self.state_dim();
        let theta = self.theta();
        DMatrix::from_fn(n + x.nrows(), x.ncols(), |i, j| {
            if i < n {
                self.lambda * theta[(i, 0)]
            } else {
                x[(i - n, j)]
            }
        })
    }
    /// `-grad L_in(phi) - lambda phi + lambda theta`.
    fn vector_field_driven(&self, phi: &DMatrix<f64>, drive: &DMatrix<f64>) -> DMatrix<f64> {
        let n = self.state_dim();
        let x = drive.rows(n, drive.nrows() - n).into_owned();
        let mut f = drive.rows(0, n) - phi * self.lambda;
        for j in 0..phi.ncols() {
            let (xs, ys) = self.task(&x, j);
            let g = self
                .learner
                .gradient(phi.column(j).as_slice(), &xs, &ys)
                .expect("shapes checked by the system");
            f.column_mut(j).axpy(-1.0, &g, 1.0);
        }
        f
    }
    fn linearize(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        _psi: Option<&DMatrix<f64>>,
    ) -> MetaLinearization {
        MetaLinearization {
            phi: phi.clone(),
            x: x.clone(),
        }
    }
    /// `J_f v = -(H_in + lambda I) v`.
    fn jvp_at(&self, lin: &MetaLinearization, dphi: &DMatrix<f64>) -> DMatrix<f64> {
        self.products(&lin.phi, &lin.x, dphi).1
    }
    /// `J_f` is symmetric.
    fn vjp_at(&self, lin: &MetaLinearization, w: &DMatrix<f64>) -> DMatrix<f64> {
        self.jvp_at(lin, w)
    }
    /// One backward pass with its R-operator gives both.
    fn field_and_vjp(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        let n = self.state_dim();
        let (grad, jw) = self.products(phi, x, w);
        (drive.rows(0, n) - phi * self.lambda - grad, jw)
    }
    /// `lambda sum_tasks psi` (theta is shared).
    fn param_vjp(&self, _phi: &DMatrix<f64>, _x: &DMatrix<f64>, psi: &DMatrix<f64>) -> Params {
        let sum = DMatrix::from_fn(psi.nrows(), 1, |i, _| self.lambda * psi.row(i).sum());
        Params::new(vec![("theta".into(), sum)])
    }
    fn inner_problem(&self) -> Option<&dyn InnerProblem> {
        Some(self)
    }
    /// The inner fine-tuning starts at theta.
    fn initial_state(&self, batch: usize) -> DMatrix<f64> {
        let theta = self.theta();
        DMatrix::from_fn(self.state_dim(), batch, |i, _| theta[(i, 0)])
    }
}

impl InnerProblem for MetaSystem {
    fn pull(&self) -> f64 {
        self.lambda
    }
}

/// The query loss `L_out(phi)` of each task, the learner's loss on the query set (mean
/// squared error or cross-entropy, [`crate::system::learner::LearnerLoss`]): it reads all of
/// phi through the learner; a target column holds the query set `(x_1..x_Q, y_1..y_Q)`.
#[derive(Clone, Debug)]
pub struct QueryLoss {
    pub learner: Mlp,
}

impl StateLoss for QueryLoss {
    fn name(&self) -> String {
        match self.learner.loss_kind() {
            LearnerLoss::SquaredError => "query-mse".into(),
            LearnerLoss::CrossEntropy => "query-cross-entropy".into(),
        }
    }
    fn values(&self, y: &DMatrix<f64>, target: &DMatrix<f64>) -> Vec<f64> {
        (0..y.ncols())
            .map(|j| {
                let (xq, yq) = split_points(&self.learner, target.column(j).as_slice());
                self.learner
                    .loss(y.column(j).as_slice(), &xq, &yq)
                    .unwrap_or(f64::NAN)
            })
            .collect()
    }
    fn gradient(&self, y: &DMatrix<f64>, target: &DMatrix<f64>) -> DMatrix<f64> {
        let mut g = DMatrix::zeros(y.nrows(), y.ncols());
        for j in 0..y.ncols() {
            let (xq, yq) = split_points(&self.learner, target.column(j).as_slice());
            let col = self
                .learner
                .gradient(y.column(j).as_slice(), &xq, &yq)
                .expect("query set shapes match the learner");
            g.set_column(j, &col);
        }
        g
    }
    fn hessian_vector(
        &self,
        y: &DMatrix<f64>,
        target: &DMatrix<f64>,
        dy: &DMatrix<f64>,
    ) -> DMatrix<f64> {
        let mut h = DMatrix::zeros(y.nrows(), y.ncols());
        for j in 0..y.ncols() {
            let (xq, yq) = split_points(&self.learner, target.column(j).as_slice());
            let col = self
                .learner
                .hvp(y.column(j).as_slice(), &xq, &yq, dy.column(j).as_slice())
                .expect("query set shapes match the learner");
            h.set_column(j, &col);
        }
        h
    }
    fn classifies(&self) -> bool {
        self.learner.loss_kind() == LearnerLoss::CrossEntropy
    }
    /// The share of each task's query points classified correctly (NaN for regression).
    fn accuracies(&self, y: &DMatrix<f64>, target: &DMatrix<f64>) -> Vec<f64> {
        (0..y.ncols())
            .map(|j| {
                let (xq, yq) = split_points(&self.learner, target.column(j).as_slice());
                match self.classifies() {
                    true => self
                        .learner
                        .accuracy(y.column(j).as_slice(), &xq, &yq)
                        .unwrap_or(f64::NAN),
                    false => f64::NAN,
                }
            })
            .collect()
    }
}
