//! The learned feedback of LCP-KP and LCP-LF (spec 3.2, 3.3): what the controller's
//! feedback weights start from and how they learn. The controlled dynamics that use them
//! are in [`crate::control`] ([`Feedback`]).

use crate::control::{controlled_rows, CoupledSystem, Feedback};
use crate::error::{ensure_non_negative, ensure_positive, invalid, Result};
use crate::learn::variant::Method;
use crate::numerics::rng::Rng;
use crate::system::params::Params;
use crate::system::{ControlEntry, EquilibriumSystem, KolenPollack};
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::AddAssign;
use std::sync::Arc;

/// LCP-KP: the angles (degrees) between each feedback tensor and the transpose it stands in
/// for (rate net: B vs W^T, G vs D^T); NaN for a system without Kolen-Pollack feedback.
pub fn kolen_pollack_angles<S: EquilibriumSystem>(system: &S, feedback: &Params) -> Vec<f64> {
    system
        .kolen_pollack()
        .map_or_else(Vec::new, |kp| kp.feedback_angles(feedback))
}

/// LCP-KP's decay before every batch: the system's decaying parameters (rate net: W, b, D,
/// d; the reference's `kp_wd`) and the feedback weights are multiplied by `1 - weight_decay`.
pub fn kolen_pollack_decay<S: EquilibriumSystem>(
    system: &mut S,
    feedback: &mut Params,
    weight_decay: f64,
) {
    let keep = 1.0 - weight_decay;
    let decaying = system
        .kolen_pollack()
        .map_or_else(Vec::new, |kp| kp.decaying_params());
    let p = system.params_mut();
    for i in decaying {
        *p.tensor_mut(i) *= keep;
    }
    feedback.scale(keep);
}

/// LCP-KP's descent direction for the feedback weights: the negated transposed updates
/// (rate net: `-(Delta W)^T` for B, `-(Delta D)^T` for G), so that the feedback weights follow
/// the transposes (a layered net's masked W update keeps B's structure).
pub fn kolen_pollack_descent<S: EquilibriumSystem>(system: &S, update: &Params) -> Result<Params> {
    let mut d = kolen_pollack_of(system)?.transposed_update(update);
    d.scale(-1.0);
    Ok(d)
}

/// The system's Kolen-Pollack capability, or an error naming the method.
pub fn kolen_pollack_of<S: EquilibriumSystem>(
    system: &S,
) -> Result<&dyn KolenPollack<S::Linearization>> {
    system.kolen_pollack().ok_or_else(|| {
        invalid(
            "method.name",
            "lcp-kp",
            "a method this system offers (it has no Kolen-Pollack feedback weights)",
        )
    })
}

/// LCP-LF's initial Q (|C| x k: controlled rows by loss rows), entries normal with variance 1 / k.
pub fn initial_linear_feedback<S: EquilibriumSystem>(system: &S, seed: u64) -> DMatrix<f64> {
    let mut rng = Rng::seed_from_u64(seed);
    let k = system.loss_dim();
    let sd = 1.0 / (k as f64).sqrt();
    DMatrix::from_fn(controlled_rows(system).len(), k, |_, _| sd * rng.normal())
}

/// LCP-LF's update at the controlled equilibrium: as the least-control update, but the
/// control of the controlled rows enters as the rate change it causes (rate net:
/// `s'(v*) * e*` for W, b, E, c); the loss rows move with u*.
pub fn linear_feedback_update<S: EquilibriumSystem>(
    system: &CoupledSystem<'_, S>,
    z_star: &DMatrix<f64>,
) -> Result<Params> {
    let rate = system.model().rate_change().ok_or_else(|| {
        invalid(
            "method.name",
            "lcp-lf",
            "a method this system offers (it has no rate change for the linear-feedback update)",
        )
    })?;
    let phi = system.phi(z_star);
    let psi = rate.rate_change(&phi, &system.control(z_star));
    Ok(crate::learn::plasticity::update_from_control(
        system, &phi, &psi,
    ))
}

/// `eps <- keep * eps + kick * xi` with standard normal xi, column j from `streams[j]`
/// (columns in parallel).
fn ornstein_uhlenbeck_step(eps: &mut DMatrix<f64>, streams: &mut [Rng], keep: f64, kick: f64) {
    let rows = eps.nrows().max(1);
    eps.as_mut_slice()
        .par_chunks_mut(rows)
        .zip(streams.par_iter_mut())
        .for_each(|(col, rng)| rng.add_normals(col, keep, kick));
}

/// How the hidden control is produced for a least-control `method`, given the controller's
/// learned weights (LCP-KP's B, G; LCP-LF's Q). Errors when a learned method lacks them.
pub fn circuit(method: Method, learned: Option<&Params>) -> Result<Feedback> {
    let weights = || {
        learned.cloned().ok_or_else(|| {
            invalid(
                "feedback",
                "missing",
                &format!("learned feedback weights for method {}", method.name()),
            )
        })
    };
    Ok(match method {
        Method::LcpKp => Feedback::KolenPollack(Arc::new(weights()?)),
        Method::LcpLf => Feedback::Linear(Arc::new(weights()?.tensor(0).clone())),
        _ => Feedback::DynamicInversion,
    })
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
    /// from the controlled equilibria `z_star` and returns the new Q. Sample j's noise is
    /// its own stream drawn from `(seed, j)`, so the result depends neither on the threads
    /// nor on the other samples' noise.
    pub fn learn_q<M: EquilibriumSystem>(
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
        if model.control_entry() != ControlEntry::Readout {
            return Err(invalid(
                "method.name",
                "lcp-lf",
                "a system whose loss rows are readouts (the noisy phase slows them down)",
            ));
        }
        let (n_h, b) = (system.controlled_rows().len(), z_star.ncols());
        let (dt, t2) = (self.dt, self.timescale_factor * self.timescale_factor);
        let mut phi = system.phi(z_star);
        let mut u_i = z_star.rows_range(system.integral_rows()).into_owned();
        let u_ref = system
            .control(z_star)
            .rows_range(system.loss_rows())
            .into_owned();
        let mut streams: Vec<Rng> = (0..b as u64)
            .map(|j| Rng::seed_from_u64(seed ^ j.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        let mut eps = DMatrix::zeros(n_h, b);
        ornstein_uhlenbeck_step(&mut eps, &mut streams, 0.0, 1.0);
        let mut acc = DMatrix::zeros(n_h, model.loss_dim());
        let decay_eps = dt / (self.timescale_factor * self.tau_eps);
        let kick_eps = dt.sqrt() / self.tau_eps;
        let tau_v = system.time_constants()[0];
        for _ in 0..self.steps {
            let g = system.loss_gradient(&phi);
            let u = &u_i * c.k_i - &g * c.k_p;
            let fb = q * &u + &eps * self.sigma;
            acc -= &fb * (&u - &u_ref).transpose() / (self.sigma * self.sigma * b as f64);
            let f = model.vector_field_driven(&phi, system.drive());
            let mut dv = f.rows(0, n_h) + &fb;
            dv *= dt / tau_v;
            let rows = system.loss_rows();
            let dy = (f.rows_range(rows.clone()) + &u) * (dt / (t2 * tau_v));
            let du_i = (-&g - &u_i * c.alpha) * (dt / (t2 * c.tau_u));
            phi.rows_mut(0, n_h).add_assign(&dv);
            phi.rows_range_mut(rows).add_assign(&dy);
            u_i += du_i;
            ornstein_uhlenbeck_step(&mut eps, &mut streams, 1.0 - decay_eps, kick_eps);
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
