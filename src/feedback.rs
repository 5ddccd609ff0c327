//! The learned feedback of LCP-KP and LCP-LF (spec 3.2, 3.3): what the controller's
//! feedback weights start from and how they learn. The controlled dynamics that use them
//! are in [`crate::system`] ([`Feedback`]).

use crate::error::{ensure_non_negative, ensure_positive, invalid, Result};
use crate::model::rate::{RateNetwork, B, D, D_BIAS, W};
use crate::model::EquilibriumModel;
use crate::params::Params;
use crate::rng::Rng;
use crate::system::{CoupledSystem, Feedback};
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::ops::AddAssign;

/// The angle in degrees between two matrices seen as vectors (90 when either is zero).
pub fn angle_degrees(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    let den = a.norm() * b.norm();
    let cos = if den > 0.0 { a.dot(b) / den } else { 0.0 };
    cos.clamp(-1.0, 1.0).acos().to_degrees()
}

/// LCP-KP: the angles (degrees) between B and W^T and between G and D^T.
pub fn kolen_pollack_angles(net: &RateNetwork, feedback: &Params) -> (f64, f64) {
    let p = net.params();
    (
        angle_degrees(feedback.tensor(0), &p.tensor(W).transpose()),
        angle_degrees(feedback.tensor(1), &p.tensor(D).transpose()),
    )
}

/// LCP-KP's decay before every batch: W, b, D, d and the feedback weights B, G are
/// multiplied by `1 - weight_decay` (the reference's `kp_wd`; E and c do not decay).
pub fn kolen_pollack_decay(net: &mut RateNetwork, feedback: &mut Params, weight_decay: f64) {
    let keep = 1.0 - weight_decay;
    let p = net.params_mut();
    for i in [W, B, D, D_BIAS] {
        *p.tensor_mut(i) *= keep;
    }
    feedback.scale(keep);
}

/// LCP-KP's descent direction for the feedback weights: the negated transposes of the
/// least-control update of W and D, `-(Delta W)^T` for B and `-(Delta D)^T` for G, so that B
/// and G follow W^T and D^T (a layered net's masked W update keeps B's structure).
pub fn kolen_pollack_descent(net: &RateNetwork, update: &Params) -> Params {
    let mut d = net.transposed_update(update);
    d.scale(-1.0);
    d
}

/// LCP-LF's initial Q (n_h x n_y), entries normal with variance 1 / n_y.
pub fn initial_linear_feedback(net: &RateNetwork, seed: u64) -> DMatrix<f64> {
    let mut rng = Rng::seed_from_u64(seed);
    let sd = 1.0 / (net.n_y() as f64).sqrt();
    DMatrix::from_fn(net.n_h(), net.n_y(), |_, _| sd * rng.normal())
}

/// LCP-LF's update at the controlled equilibrium: as the least-control update, but the
/// hidden units' control enters as the rate change it causes, `s'(v*) * e*` (W, b, E, c);
/// D and d move with u*.
pub fn linear_feedback_update(
    system: &CoupledSystem<'_, RateNetwork>,
    z_star: &DMatrix<f64>,
) -> Params {
    let net = system.model();
    let phi = system.phi(z_star);
    let mut psi = system.control(z_star);
    let a = net.activation();
    let n_h = net.n_h();
    let v = phi.rows(0, n_h);
    psi.rows_mut(0, n_h).zip_apply(&v, |e, v| *e *= a.slope(v));
    crate::plasticity::update_from_control(system, &phi, &psi)
}

/// `[lf]`: the noisy phase that teaches Q (spec 3.3; defaults: the authors' MNIST run).
///
/// From the controlled equilibrium (phi*, u_i*) with control u* held as reference, the
/// controlled dynamics run again with Ornstein-Uhlenbeck noise `sigma eps` added to the
/// hidden units' feedback (Euler-Maruyama, step dt, T = timescale_factor):
///
/// ```text
/// tau_v dv   = (f_v(phi) + Q u + sigma eps) dt
/// tau_v dy   = (f_y(phi) + u) dt / T^2               (output and controller T^2 slower)
/// tau_u du_i = (-grad_y L - alpha u_i) dt / T^2
/// tau_eps d eps = -(eps / T) dt + sqrt(dt) xi        (correlation time T tau_eps)
/// A += -(Q u + sigma eps) (u - u*)^T / sigma^2       (every step, batch mean)
/// ```
///
/// and then `Q += dt / tau_q * (A - weight_decay * Q)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoisyPhase {
    pub sigma: f64,
    pub tau_q: f64,
    pub weight_decay: f64,
    pub tau_eps: f64,
    pub timescale_factor: f64,
    pub steps: usize,
    pub dt: f64,
}

impl Default for NoisyPhase {
    fn default() -> Self {
        NoisyPhase {
            sigma: 0.01,
            tau_q: 1e5,
            weight_decay: 0.01,
            tau_eps: 1.0,
            timescale_factor: 5.0,
            steps: 800,
            dt: 1.0,
        }
    }
}

impl NoisyPhase {
    /// Errors name the config keys.
    pub fn validate(&self) -> Result<()> {
        ensure_positive("lf.sigma", self.sigma)?;
        ensure_positive("lf.tau_q", self.tau_q)?;
        ensure_non_negative("lf.weight_decay", self.weight_decay)?;
        ensure_positive("lf.tau_eps", self.tau_eps)?;
        ensure_positive("lf.dt", self.dt)?;
        if !(self.timescale_factor >= 1.0 && self.timescale_factor.is_finite()) {
            return Err(invalid(
                "lf.timescale_factor",
                self.timescale_factor,
                "a finite number >= 1",
            ));
        }
        if self.steps == 0 {
            return Err(invalid("lf.steps", 0, "an integer >= 1"));
        }
        Ok(())
    }

    /// Runs the noisy phase of an LCP-LF system (its feedback must be `Feedback::Linear`)
    /// from the controlled equilibria `z_star` and returns the new Q. The noise comes from
    /// `seed` alone, drawn sample by sample, so the result does not depend on threads.
    pub fn learn_q<M: EquilibriumModel>(
        &self,
        system: &CoupledSystem<'_, M>,
        z_star: &DMatrix<f64>,
        seed: u64,
    ) -> Result<DMatrix<f64>> {
        let (Some(c), Feedback::Linear(q)) = (system.controller(), system.feedback()) else {
            return Err(invalid(
                "system",
                "no linear feedback",
                "an LCP-LF controlled system (e = Q u)",
            ));
        };
        let q = &**q;
        let model = system.model();
        let (n_h, b) = (model.hidden_dim(), z_star.ncols());
        let (dt, t2) = (self.dt, self.timescale_factor * self.timescale_factor);
        let mut phi = system.phi(z_star);
        let mut u_i = z_star.rows_range(system.integral_rows()).into_owned();
        let u_ref = system
            .control(z_star)
            .rows_range(system.output_rows())
            .into_owned();
        let mut rng = Rng::seed_from_u64(seed);
        let mut normal =
            |rows: usize, cols: usize| DMatrix::from_fn(rows, cols, |_, _| rng.normal());
        let mut eps = normal(n_h, b);
        let mut acc = DMatrix::zeros(n_h, model.output_dim());
        let decay_eps = dt / (self.timescale_factor * self.tau_eps);
        let kick_eps = dt.sqrt() / self.tau_eps;
        let tau_v = system.time_constants()[0];
        for _ in 0..self.steps {
            let g = system.output_gradient(&phi);
            let u = &u_i * c.k_i - &g * c.k_p;
            let fb = q * &u + &eps * self.sigma;
            acc -= &fb * (&u - &u_ref).transpose() / (self.sigma * self.sigma * b as f64);
            let f = model.vector_field_driven(&phi, system.drive());
            let mut dv = f.rows(0, n_h) + &fb;
            dv *= dt / tau_v;
            let rows = system.output_rows();
            let dy = (f.rows_range(rows.clone()) + &u) * (dt / (t2 * tau_v));
            let du_i = (-&g - &u_i * c.alpha) * (dt / (t2 * c.tau_u));
            phi.rows_mut(0, n_h).add_assign(&dv);
            phi.rows_range_mut(rows).add_assign(&dy);
            u_i += du_i;
            eps = &eps * (1.0 - decay_eps) + normal(n_h, b) * kick_eps;
        }
        let new_q = q + (acc - q * self.weight_decay) * (dt / self.tau_q);
        if !new_q.iter().all(|v| v.is_finite()) {
            return Err(invalid(
                "lf",
                "the noisy phase diverged (Q became non-finite)",
                "a smaller lf.dt or lf.sigma, or a larger lf.tau_q",
            ));
        }
        Ok(new_q)
    }
}
