//! `[model]`, `[dynamics]` and `[controller]`: the rate network, its time constants and
//! the leaky PI controller.

use crate::numerics::activation::Activation;
use serde::{Deserialize, Serialize};

/// Network connectivity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Recurrent (dense W), reference "rnn".
    Rnn,
    /// Layered feedforward (block-structured W), reference "ff".
    Ff,
    /// Meta-learning (spec 7.1): the inner fine-tuning of a learner MLP `1 - hidden - 1` on
    /// a task's support set ([meta]; `data.source = "sinusoid"`).
    Meta,
    /// A layered convolutional net ([conv]) on an image source; its free equilibrium is the
    /// forward pass.
    Conv,
    /// A convolutional deep equilibrium model ([deq]) on an image source; a genuine fixed point.
    Deq,
}

/// `[model]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// "rnn", "ff", "meta", "conv" or "deq".
    pub kind: ModelKind,
    /// Hidden units: one size for rnn, one size per layer for ff and for meta's learner (not
    /// read by conv and deq: [conv] and [deq] give their sizes).
    pub hidden: Vec<usize>,
    pub activation: Activation,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: ModelKind::Rnn,
            hidden: vec![64],
            activation: Activation::Tanh,
            seed: 0,
        }
    }
}

/// `[dynamics]`: time constants (time units).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicsConfig {
    pub tau_v: f64,
    pub tau_u: f64,
    pub tau_e: f64,
}

impl Default for DynamicsConfig {
    fn default() -> Self {
        DynamicsConfig {
            tau_v: 1.0,
            tau_u: 1.0,
            tau_e: 1.0,
        }
    }
}

/// `[controller]`: the leaky PI controller (spec 3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    pub alpha: f64,
    pub k_i: f64,
    pub k_p: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            alpha: 1.0,
            k_i: 1.0,
            k_p: 0.0,
        }
    }
}
