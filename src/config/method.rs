//! `[method]` (the learning rule, its loss and what to do with unconverged solves) and the
//! sections that belong to one method each: `[kp]`, `[lf]`, `[ebd]`.

use crate::control::LossScale;
use crate::system::loss::Loss;
use serde::{Deserialize, Serialize};

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
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig {
            name: Method::LcpDi,
            loss: Loss::CrossEntropy,
            loss_scale: LossScale::BatchMean,
            on_unconverged: OnUnconverged::Use,
            controlled_start: ControlledStart::Free,
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
