//! Optimizers exactly as the reference PyTorch code trains: `torch.optim.SGD`
//! (optional heavy-ball momentum), `torch.optim.Adam` (bias-corrected, with coupled L2
//! weight decay, *not* AdamW), `torch.nn.utils.clip_grad_norm_` and
//! `torch.optim.lr_scheduler.CosineAnnealingLR` stepped once per optimizer step.
//!
//! The optimizers consume a *descent gradient*: the direction that is subtracted from
//! the parameters. A learning rule that produces an update `delta` (e.g. the
//! least-control rule) is passed as `-delta`, exactly as the reference writes
//! `p.grad = -delta` before calling `optimizer.step()`.
//!
//! Order of operations in one step (as in the reference training loop):
//! 1. refuse a non-finite gradient (nothing is modified),
//! 2. clip the gradient to the global norm `clip_norm` (if set),
//! 3. add weight decay `g += weight_decay * theta`,
//! 4. apply the SGD or Adam rule with the learning rate scheduled for this step.

use serde::{Deserialize, Serialize};

use crate::error::{
    ensure_finite, ensure_non_negative, ensure_positive, invalid, LcsimError, Result,
};
use crate::numerics::simd::widest_fn;
use crate::system::params::Params;

/// Which update rule to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.SGD` (with `momentum`, `weight_decay`; no dampening, no Nesterov).
    Sgd,
    /// `torch.optim.Adam` (with `betas`, `eps`, `weight_decay`; no AMSGrad).
    Adam,
}

/// Learning-rate schedule, evaluated at the number of optimizer steps already taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    /// `lr_t = lr` for every step.
    #[default]
    Constant,
    /// `CosineAnnealingLR(T_max = total_steps, eta_min = min_factor * lr)`:
    /// `lr_t = eta_min + (lr - eta_min) * (1 + cos(pi * t / T)) / 2` with `t` clamped
    /// at `T` (the reference uses `min_factor = 0.1`, `T = epochs * batches per epoch`).
    Cosine {
        /// `T`: the number of steps over which the rate decays.
        total_steps: usize,
        /// `eta_min / lr`, in [0, 1].
        min_factor: f64,
    },
}

impl Schedule {
    /// The learning rate for the step taken after `step` steps:
    /// `lr` (constant) or `eta_min + (lr - eta_min) * (1 + cos(pi * min(t, T) / T)) / 2`
    /// with `eta_min = min_factor * lr` (cosine).
    pub fn learning_rate_at(&self, base: f64, step: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Cosine {
                total_steps,
                min_factor,
            } => {
                if total_steps == 0 {
                    return min_factor * base;
                }
                let eta_min = min_factor * base;
                let t = step.min(total_steps) as f64;
                let frac = t / total_steps as f64;
                eta_min + (base - eta_min) * (1.0 + (std::f64::consts::PI * frac).cos()) / 2.0
            }
        }
    }

    /// Checks `total_steps > 0` and `min_factor` in [0, 1] (fields under `prefix`).
    fn validate(&self, prefix: &str) -> Result<()> {
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Cosine {
                total_steps,
                min_factor,
            } => {
                if total_steps == 0 {
                    return Err(invalid(
                        &format!("{prefix}.total_steps"),
                        total_steps,
                        "an integer > 0",
                    ));
                }
                if !(min_factor.is_finite() && (0.0..=1.0).contains(&min_factor)) {
                    return Err(invalid(
                        &format!("{prefix}.min_factor"),
                        min_factor,
                        "a number in [0, 1]",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Optimizer hyper-parameters (the `training` section of a run configuration).
/// `beta1`, `beta2`, `eps` are used by Adam only, `momentum` by SGD only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSettings {
    /// Update rule.
    pub kind: OptimizerKind,
    /// Base learning rate `lr` (> 0).
    pub learning_rate: f64,
    /// Adam `beta1` in [0, 1).
    pub beta1: f64,
    /// Adam `beta2` in [0, 1).
    pub beta2: f64,
    /// Adam `eps` (> 0).
    pub eps: f64,
    /// Coupled L2 weight decay `g += weight_decay * theta` (>= 0).
    pub weight_decay: f64,
    /// SGD momentum in [0, 1) (0 = plain SGD).
    pub momentum: f64,
    /// Global gradient-norm clipping threshold (> 0), or none.
    pub clip_norm: Option<f64>,
    /// Learning-rate schedule.
    pub schedule: Schedule,
}

impl Default for OptimizerSettings {
    /// PyTorch's Adam defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight
    /// decay, no clipping, constant rate.
    fn default() -> Self {
        OptimizerSettings {
            kind: OptimizerKind::Adam,
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            clip_norm: None,
            schedule: Schedule::Constant,
        }
    }
}

/// Checks `0 <= value < 1`.
fn ensure_unit_interval(field: &str, value: f64) -> Result<()> {
    if value.is_finite() && (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, value, "a number in [0, 1)"))
    }
}

impl OptimizerSettings {
    /// Checks every field (errors name it as `training.<field>`).
    pub fn validate(&self) -> Result<()> {
        ensure_positive("training.learning_rate", self.learning_rate)?;
        ensure_unit_interval("training.beta1", self.beta1)?;
        ensure_unit_interval("training.beta2", self.beta2)?;
        ensure_positive("training.eps", self.eps)?;
        ensure_non_negative("training.weight_decay", self.weight_decay)?;
        ensure_unit_interval("training.momentum", self.momentum)?;
        if let Some(c) = self.clip_norm {
            ensure_positive("training.clip_norm", c)?;
        }
        self.schedule.validate("training.schedule")
    }

    /// True when SGD keeps a momentum buffer.
    fn uses_momentum(&self) -> bool {
        self.kind == OptimizerKind::Sgd && self.momentum != 0.0
    }
}

/// PyTorch's clipping coefficient `min(1, max_norm / (norm + 1e-6))`.
fn clip_coefficient(norm: f64, max_norm: f64) -> f64 {
    (max_norm / (norm + 1e-6)).min(1.0)
}

/// `torch.nn.utils.clip_grad_norm_`: with `norm = ||grad||_2` over all tensors,
/// `grad *= max_norm / (norm + 1e-6)` when that factor is below 1 (i.e. when
/// `norm > max_norm`, up to the 1e-6 guard). Returns `norm` before clipping.
pub fn clip_by_global_norm(grad: &mut Params, max_norm: f64) -> f64 {
    let norm = grad.norm();
    let coef = clip_coefficient(norm, max_norm);
    if coef < 1.0 {
        grad.scale(coef);
    }
    norm
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// Learning rate used for this step (after the schedule).
    pub learning_rate: f64,
    /// Global norm of the descent gradient before clipping (and before weight decay).
    pub gradient_norm: f64,
    /// Whether clipping scaled the gradient.
    pub clipped: bool,
}

/// Resumable optimizer state: steps taken and the moment buffers (`first_moment` is
/// Adam's `exp_avg` or SGD's `momentum_buffer`; `second_moment` is Adam's `exp_avg_sq`).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    /// Number of steps already taken.
    pub step: usize,
    /// Adam `m` / SGD momentum buffer (none before the first step or without momentum).
    pub first_moment: Option<Params>,
    /// Adam `v` (none before the first step and for SGD).
    pub second_moment: Option<Params>,
}

/// An SGD or Adam optimizer with its state.
#[derive(Clone, Debug)]
pub struct Optimizer {
    settings: OptimizerSettings,
    step: usize,
    m: Option<Params>,
    v: Option<Params>,
    /// Adam's new (theta, m, v), swapped in when every entry is finite (reused buffers).
    scratch: Option<Box<[Params; 3]>>,
}

/// Checks that `other` has the tensor count and shapes of `reference`.
fn check_layout(field: &str, reference: &Params, other: &Params) -> Result<()> {
    if reference.len() != other.len() {
        return Err(LcsimError::Shape {
            field: field.to_string(),
            expected: format!("{} tensors", reference.len()),
            found: format!("{} tensors", other.len()),
        });
    }
    for ((name, a), (other_name, b)) in reference.iter().zip(other.iter()) {
        if a.shape() != b.shape() || name != other_name {
            return Err(LcsimError::Shape {
                field: format!("{field}.{other_name}"),
                expected: format!("`{name}` of shape {}x{}", a.nrows(), a.ncols()),
                found: format!("`{other_name}` of shape {}x{}", b.nrows(), b.ncols()),
            });
        }
    }
    Ok(())
}

/// Checks that every entry of `p` is finite (errors name `field.<tensor>`).
fn check_finite(field: &str, p: &Params) -> Result<()> {
    for (name, m) in p.iter() {
        ensure_finite(&format!("{field}.{name}"), m.as_slice())?;
    }
    Ok(())
}

/// [`LcsimError::NonFiniteUpdate`] at the first non-finite entry of `p` (the `what` of a
/// step numbered `step`, counting from 1).
fn non_finite_entry(what: &str, p: &Params, step: usize) -> Result<()> {
    for (name, t) in p.iter() {
        if let Some(index) = t.iter().position(|x| !x.is_finite()) {
            return Err(LcsimError::NonFiniteUpdate {
                what: what.to_string(),
                tensor: name.to_string(),
                step,
                index,
                value: t.as_slice()[index],
            });
        }
    }
    Ok(())
}

widest_fn! {
    fn adam_entries(step: &AdamStep, g: &[f64], old: [&[f64]; 3], out: [&mut [f64]; 3]) -> bool {
        step.apply_portable(g, old, out)
    }
}

/// The constants of one Adam step (see [`Optimizer::step`]).
struct AdamStep {
    clip: Option<f64>,
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    step_size: f64,
    bias_correction2_sqrt: f64,
}

impl AdamStep {
    /// Writes the new `[theta, m, v]` of one tensor into `out` from the gradient and the old
    /// `[theta, m, v]`; false when an entry is not finite (compiled for the widest vector
    /// unit).
    fn apply(&self, g: &[f64], old: [&[f64]; 3], out: [&mut [f64]; 3]) -> bool {
        adam_entries(self, g, old, out)
    }

    /// `g <- clip * g + wd * theta`, `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
    /// `theta -= step_size * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
    #[inline(always)]
    fn apply_portable(&self, g: &[f64], old: [&[f64]; 3], out: [&mut [f64]; 3]) -> bool {
        let [p, m, v] = old;
        let [op, om, ov] = out;
        let (b1, b2) = (self.beta1, self.beta2);
        let mut bad = false;
        let entries = g.iter().zip(p).zip(m).zip(v);
        let outs = op.iter_mut().zip(om.iter_mut()).zip(ov.iter_mut());
        for ((((&g, &p), &m), &v), ((op, om), ov)) in entries.zip(outs) {
            let g = match self.clip {
                Some(c) => g * c,
                None => g,
            };
            let g = if self.weight_decay != 0.0 {
                g + p * self.weight_decay
            } else {
                g
            };
            let m = b1 * m + (1.0 - b1) * g;
            let v = b2 * v + (1.0 - b2) * g * g;
            let denom = v.sqrt() / self.bias_correction2_sqrt + self.eps;
            let p = p - self.step_size * (m / denom);
            bad |= !(p.is_finite() & m.is_finite() & v.is_finite());
            (*op, *om, *ov) = (p, m, v);
        }
        !bad
    }
}

impl Optimizer {
    /// A fresh optimizer (no steps taken) after validating `settings`.
    pub fn new(settings: OptimizerSettings) -> Result<Self> {
        settings.validate()?;
        Ok(Optimizer {
            settings,
            step: 0,
            m: None,
            v: None,
            scratch: None,
        })
    }

    /// Resumes from a saved [`OptimizerState`]; the buffers must match the rule:
    /// Adam has both moments exactly when `step > 0`, SGD with momentum has a
    /// momentum buffer exactly when `step > 0`, plain SGD has none.
    pub fn from_state(settings: OptimizerSettings, state: OptimizerState) -> Result<Self> {
        settings.validate()?;
        let started = state.step > 0;
        let (want_m, want_v) = match settings.kind {
            OptimizerKind::Adam => (started, started),
            OptimizerKind::Sgd => (started && settings.uses_momentum(), false),
        };
        let presence = |name: &str, has: bool, want: bool| -> Result<()> {
            if has == want {
                Ok(())
            } else {
                Err(invalid(
                    &format!("optimizer_state.{name}"),
                    if has { "present" } else { "absent" },
                    &format!(
                        "{} for {:?} with momentum {} after {} steps",
                        if want { "present" } else { "absent" },
                        settings.kind,
                        settings.momentum,
                        state.step
                    ),
                ))
            }
        };
        presence("first_moment", state.first_moment.is_some(), want_m)?;
        presence("second_moment", state.second_moment.is_some(), want_v)?;
        if let Some(m) = &state.first_moment {
            check_finite("optimizer_state.first_moment", m)?;
            if let Some(v) = &state.second_moment {
                check_layout("optimizer_state.second_moment", m, v)?;
            }
        }
        if let Some(v) = &state.second_moment {
            check_finite("optimizer_state.second_moment", v)?;
            if let Some((name, bad)) = v
                .iter()
                .find_map(|(n, t)| t.iter().find(|x| **x < 0.0).map(|x| (n, *x)))
            {
                return Err(invalid(
                    &format!("optimizer_state.second_moment.{name}"),
                    bad,
                    "entries >= 0",
                ));
            }
        }
        Ok(Optimizer {
            settings,
            step: state.step,
            m: state.first_moment,
            v: state.second_moment,
            scratch: None,
        })
    }

    /// The Adam step of [`Optimizer::step`] without allocating: the new parameters and
    /// moments are written into reused buffers in one pass (the same arithmetic), then
    /// swapped in when every entry is finite. None (nothing modified) otherwise: the
    /// copying path then reports which entry.
    fn adam_in_place(
        &mut self,
        params: &mut Params,
        gradient: &Params,
        gradient_norm: f64,
    ) -> Option<StepReport> {
        let s = &self.settings;
        let coef = s
            .clip_norm
            .map_or(1.0, |c| clip_coefficient(gradient_norm, c));
        let lr = s.schedule.learning_rate_at(s.learning_rate, self.step);
        let t = (self.step + 1) as i32;
        let adam = AdamStep {
            clip: (coef < 1.0).then_some(coef),
            weight_decay: s.weight_decay,
            beta1: s.beta1,
            beta2: s.beta2,
            eps: s.eps,
            step_size: lr / (1.0 - s.beta1.powi(t)),
            bias_correction2_sqrt: (1.0 - s.beta2.powi(t)).sqrt(),
        };
        let fits = |b: &[Params; 3]| check_layout("scratch", params, &b[0]).is_ok();
        let mut scratch = match self.scratch.take() {
            Some(b) if fits(&b) => b,
            _ => Box::new([
                params.zeros_like(),
                params.zeros_like(),
                params.zeros_like(),
            ]),
        };
        let mut finite = true;
        for i in 0..params.len() {
            let (g, p) = (gradient.tensor(i).as_slice(), params.tensor(i).as_slice());
            let zeros; // the moments before the first step
            let (m, v) = match (&self.m, &self.v) {
                (Some(m), Some(v)) => (m.tensor(i).as_slice(), v.tensor(i).as_slice()),
                _ => {
                    zeros = vec![0.0; g.len()];
                    (&zeros[..], &zeros[..])
                }
            };
            let [sp, sm, sv] = &mut *scratch;
            let out = [sp, sm, sv].map(|b| b.tensor_mut(i).as_mut_slice());
            finite &= adam.apply(g, [p, m, v], out);
        }
        if !finite {
            self.scratch = Some(scratch);
            return None;
        }
        let [sp, sm, sv] = &mut *scratch;
        std::mem::swap(params, sp);
        for (moment, new) in [(&mut self.m, sm), (&mut self.v, sv)] {
            match moment {
                Some(old) => std::mem::swap(old, new),
                None => *moment = Some(std::mem::replace(new, params.zeros_like())),
            }
        }
        self.scratch = Some(scratch);
        self.step += 1;
        Some(StepReport {
            learning_rate: lr,
            gradient_norm,
            clipped: adam.clip.is_some(),
        })
    }

    /// A copy of the state for checkpointing (see [`Optimizer::from_state`]).
    pub fn state(&self) -> OptimizerState {
        OptimizerState {
            step: self.step,
            first_moment: self.m.clone(),
            second_moment: self.v.clone(),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &OptimizerSettings {
        &self.settings
    }

    /// Number of steps taken so far.
    pub fn steps_taken(&self) -> usize {
        self.step
    }

    /// The learning rate the next step will use.
    pub fn current_learning_rate(&self) -> f64 {
        self.settings
            .schedule
            .learning_rate_at(self.settings.learning_rate, self.step)
    }

    /// One step `theta <- theta - update(g)` with the descent gradient `g = gradient`:
    ///
    /// * clip: `g *= min(1, c / (||g|| + 1e-6))` when `clip_norm = c` is set;
    /// * weight decay: `g += wd * theta`;
    /// * SGD: `theta -= lr_t * g`, or with momentum `mu`:
    ///   `b = g` (first step) / `b = mu * b + g`, `theta -= lr_t * b`;
    /// * Adam (`t` = this step, counting from 1):
    ///   `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
    ///   `theta -= (lr_t / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`;
    ///
    /// where `lr_t` is the scheduled rate after the steps already taken. A non-finite
    /// gradient (or parameter), a layout mismatch, or a step whose new parameters or
    /// moments would not be finite ([`LcsimError::NonFiniteUpdate`]) is refused with an
    /// error and nothing (parameters, moments, step count) is modified.
    pub fn step(&mut self, params: &mut Params, gradient: &Params) -> Result<StepReport> {
        check_layout("gradient", params, gradient)?;
        for (field, buffer) in [
            ("optimizer_state.first_moment", &self.m),
            ("optimizer_state.second_moment", &self.v),
        ] {
            if let Some(b) = buffer {
                check_layout(field, params, b)?;
            }
        }
        check_finite("gradient", gradient)?;
        check_finite("parameters", params)?;
        let gradient_norm = gradient.norm();
        if !gradient_norm.is_finite() {
            return Err(invalid(
                "gradient (global norm)",
                gradient_norm,
                "a finite number (the entries overflow when squared)",
            ));
        }

        if self.settings.kind == OptimizerKind::Adam {
            if let Some(report) = self.adam_in_place(params, gradient, gradient_norm) {
                return Ok(report);
            }
        }
        let s = &self.settings;
        let mut g = gradient.clone();
        let mut clipped = false;
        if let Some(max_norm) = s.clip_norm {
            let coef = clip_coefficient(gradient_norm, max_norm);
            if coef < 1.0 {
                g.scale(coef);
                clipped = true;
            }
        }
        if s.weight_decay != 0.0 {
            g.axpy(s.weight_decay, params);
        }
        let lr = s.schedule.learning_rate_at(s.learning_rate, self.step);

        // The step works on copies, committed only when every entry is finite.
        let mut theta = params.clone();
        let (mut m_new, mut v_new) = (self.m.clone(), self.v.clone());
        match s.kind {
            OptimizerKind::Sgd => {
                if s.uses_momentum() {
                    let buf = match m_new.take() {
                        None => g,
                        Some(mut b) => {
                            b.scale(s.momentum);
                            b.axpy(1.0, &g);
                            b
                        }
                    };
                    theta.axpy(-lr, &buf);
                    m_new = Some(buf);
                } else {
                    theta.axpy(-lr, &g);
                }
            }
            OptimizerKind::Adam => {
                let t = (self.step + 1) as i32;
                let (b1, b2) = (s.beta1, s.beta2);
                let m = m_new.get_or_insert_with(|| params.zeros_like());
                let v = v_new.get_or_insert_with(|| params.zeros_like());
                let bias_correction1 = 1.0 - b1.powi(t);
                let bias_correction2_sqrt = (1.0 - b2.powi(t)).sqrt();
                let step_size = lr / bias_correction1;
                for (i, gi) in g.iter().map(|(_, x)| x).enumerate() {
                    let mi = m.tensor_mut(i);
                    let vi = v.tensor_mut(i);
                    let pi = theta.tensor_mut(i);
                    for k in 0..gi.len() {
                        let gk = gi[k];
                        // exp_avg.lerp_(grad, 1 - beta1)
                        mi[k] = b1 * mi[k] + (1.0 - b1) * gk;
                        // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                        vi[k] = b2 * vi[k] + (1.0 - b2) * gk * gk;
                        let denom = vi[k].sqrt() / bias_correction2_sqrt + s.eps;
                        pi[k] -= step_size * (mi[k] / denom);
                    }
                }
            }
        }
        for (what, p) in [
            ("parameter", Some(&theta)),
            ("first moment", m_new.as_ref()),
            ("second moment", v_new.as_ref()),
        ] {
            if let Some(p) = p {
                non_finite_entry(what, p, self.step + 1)?;
            }
        }
        *params = theta;
        (self.m, self.v) = (m_new, v_new);
        self.step += 1;
        Ok(StepReport {
            learning_rate: lr,
            gradient_norm,
            clipped,
        })
    }
}
