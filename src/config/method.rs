//! `[method]` (the learning rule, its loss and what to do with unconverged solves) and the
//! sections that belong to one method each: `[kp]`, `[lf]`, `[ebd]`.

use crate::control::branch::BranchSettings;
use crate::control::LossScale;
use crate::system::loss::Loss;
use serde::{Deserialize, Serialize};

pub use crate::control::branch::EquilibriumDefinition;
pub use crate::learn::energy::EbdConfig;
pub use crate::learn::variant::{ControlledStart, Method};

/// What training does with a sample whose controlled (or adjoint) solve did not converge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum OnUnconverged {
    /// Use the state reached, as the reference does at its iteration cap.
    Use,
    /// Leave the sample out of the update (counted in the metrics).
    Skip,
    /// Stop training with an error.
    Stop,
}

/// `[method]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodConfig {
    pub name: Method,
    pub loss: Loss,
    pub loss_scale: LossScale,
    /// Unconverged but finite solves; diverged (non-finite) ones are always skipped.
    pub on_unconverged: OnUnconverged,
    pub controlled_start: ControlledStart,
    /// Which controlled equilibrium (spec 2.2).
    pub equilibrium: EquilibriumDefinition,
    /// `equilibrium = "branch"`: the continuation's first step in the control strength.
    pub branch_initial_step: f64,
    /// Its smallest step (a corrector rejected there is a fold).
    pub branch_min_step: f64,
    /// Newton steps per corrector.
    pub branch_corrector_iterations: usize,
    /// Largest accepted correction, relative per entry.
    pub branch_max_correction: f64,
}

impl MethodConfig {
    /// The continuation's step control.
    pub fn branch(&self) -> BranchSettings {
        BranchSettings {
            initial_step: self.branch_initial_step,
            min_step: self.branch_min_step,
            corrector_iterations: self.branch_corrector_iterations,
            max_correction: self.branch_max_correction,
        }
    }
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig {
            name: Method::LcpDi,
            loss: Loss::CrossEntropy,
            loss_scale: LossScale::BatchMean,
            on_unconverged: OnUnconverged::Use,
            controlled_start: ControlledStart::Free,
            equilibrium: EquilibriumDefinition::Flow,
            branch_initial_step: BranchSettings::default().initial_step,
            branch_min_step: BranchSettings::default().min_step,
            branch_corrector_iterations: BranchSettings::default().corrector_iterations,
            branch_max_correction: BranchSettings::default().max_correction,
        }
    }
}

/// `[kp]`: Kolen-Pollack feedback (spec 3.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KpConfig {
    /// Multiplicative decay `(1 - weight_decay)` of W, b, D, d, B, G before every batch.
    pub weight_decay: f64,
}

impl Default for KpConfig {
    /// The authors' MNIST setting.
    fn default() -> Self {
        KpConfig { weight_decay: 1e-6 }
    }
}

/// `[lf]`: linear feedback e = Q u with Q learned from noise (spec 3.3).
pub type LfConfig = crate::learn::feedback::NoisyPhase;
