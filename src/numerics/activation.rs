//! Rate nonlinearities s(v) with their first and second derivatives.

use crate::numerics::simd::widest_fn;
use serde::{Deserialize, Serialize};

/// The rate nonlinearity `s` of the network (spec 1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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
            Activation::Tanh => tanh(v),
            Activation::Relu => v.max(0.0),
            Activation::Sigmoid => sigmoid(v),
        }
    }

    /// `out = s(v)` entrywise, the same values as [`Activation::rate`] (tanh compiled for
    /// the widest vector unit, [`tanh_into`]).
    pub fn rates_into(self, v: &[f64], out: &mut [f64]) {
        match self {
            Activation::Tanh => tanh_into(v, out),
            _ => {
                for (o, &v) in out.iter_mut().zip(v) {
                    *o = self.rate(v);
                }
            }
        }
    }

    /// The slope s'(v) (s'(0) = 0 for relu, as PyTorch).
    pub fn slope(self, v: f64) -> f64 {
        self.slope_at_rate(v, self.rate(v))
    }

    /// The slope s'(v) given the rate s = s(v) (saves a second tanh or exp).
    pub fn slope_at_rate(self, v: f64, s: f64) -> f64 {
        match self {
            Activation::Tanh => 1.0 - s * s,
            Activation::Relu => {
                if v > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
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
        self.curvature_at_rate(self.rate(v))
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

/// tanh(x) within a few ulp of the correctly rounded value and about twice as fast as
/// libm's here (which goes through expm1): the rational approximation of Cephes' tanh on
/// |x| < 0.625, `1 - 2 / (exp(2|x|) + 1)` with the sign of x up to |x| = 22, +-1 beyond.
/// (A branch-free version with a polynomial exp vectorised well but changed the last bit
/// of some values, and with it the default run's trained weights: see [`tanh_into`].)
#[inline]
pub fn tanh(x: f64) -> f64 {
    let a = x.abs();
    if x == 0.0 {
        x // keeps the sign of -0
    } else if a < 0.625 {
        tanh_rational(x)
    } else if a < 22.0 {
        (1.0 - 2.0 / ((2.0 * a).exp() + 1.0)).copysign(x)
    } else if a.is_nan() {
        x
    } else {
        1.0f64.copysign(x)
    }
}

/// The rational branch of [`tanh`] (|x| < 0.625, x != 0).
#[inline(always)]
fn tanh_rational(x: f64) -> f64 {
    let z = x * x;
    let p =
        (-9.643_991_794_250_523e-1 * z - 9.928_772_310_019_186e1) * z - 1.614_687_684_417_084_5e3;
    let q = ((z + 1.128_116_784_916_329_3e2) * z + 2.235_488_390_601_004_6e3) * z
        + 4.844_063_053_251_255e3;
    x + x * z * p / q
}

widest_fn! {
    /// The rational branch of [`tanh`] for every entry, compiled for the widest vector unit
    /// (entries outside its range are overwritten by [`tanh_into`]).
    fn tanh_rational_into(v: &[f64], out: &mut [f64]) {
        for (o, &v) in out.iter_mut().zip(v) {
            *o = tanh_rational(v);
        }
    }
}

/// `out = tanh(v)` entrywise, bit for bit [`tanh`]: the rational branch in one vectorised
/// pass, then the entries with |v| >= 0.625 (libm's exp), zeros and NaN one at a time.
pub fn tanh_into(v: &[f64], out: &mut [f64]) {
    tanh_rational_into(v, out);
    for (o, &v) in out.iter_mut().zip(v) {
        // NaN takes the scalar path too.
        if v.abs() >= 0.625 || v == 0.0 || v.is_nan() {
            *o = tanh(v);
        }
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}
