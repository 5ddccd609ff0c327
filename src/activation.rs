//! Rate nonlinearities s(v) with their first and second derivatives.

use serde::{Deserialize, Serialize};

/// The rate nonlinearity `s` of the network (spec 1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// s(v) = tanh(v) (reference setting).
    #[default]
    Tanh,
    /// s(v) = max(v, 0); s'(0) = 0 as in PyTorch.
    Relu,
    /// s(v) = 1 / (1 + exp(-v)).
    Sigmoid,
}

impl Activation {
    /// The rate s(v).
    pub fn rate(self, v: f64) -> f64 {
        match self {
            Activation::Tanh => v.tanh(),
            Activation::Relu => v.max(0.0),
            Activation::Sigmoid => sigmoid(v),
        }
    }

    /// The slope s'(v).
    pub fn slope(self, v: f64) -> f64 {
        match self {
            Activation::Tanh => 1.0 - v.tanh().powi(2),
            Activation::Relu => {
                if v > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Sigmoid => {
                let s = sigmoid(v);
                s * (1.0 - s)
            }
        }
    }

    /// The slope s'(v) given the rate s = s(v) (saves a second tanh or exp).
    pub fn slope_at_rate(self, v: f64, s: f64) -> f64 {
        match self {
            Activation::Tanh => 1.0 - s * s,
            Activation::Relu => self.slope(v),
            Activation::Sigmoid => s * (1.0 - s),
        }
    }

    /// The curvature s''(v) given the rate s = s(v).
    pub fn curvature_at_rate(self, s: f64) -> f64 {
        match self {
            Activation::Tanh => -2.0 * s * (1.0 - s * s),
            Activation::Relu => 0.0,
            Activation::Sigmoid => s * (1.0 - s) * (1.0 - 2.0 * s),
        }
    }

    /// The curvature s''(v) (zero for relu away from its kink).
    pub fn curvature(self, v: f64) -> f64 {
        match self {
            Activation::Tanh => {
                let t = v.tanh();
                -2.0 * t * (1.0 - t * t)
            }
            Activation::Relu => 0.0,
            Activation::Sigmoid => {
                let s = sigmoid(v);
                s * (1.0 - s) * (1.0 - 2.0 * s)
            }
        }
    }

    /// Name as used in configs and files.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
        }
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}
