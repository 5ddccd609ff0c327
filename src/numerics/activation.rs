//! Rate nonlinearities s(v) with their first and second derivatives.

use crate::numerics::real::Real;
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

    /// [`Activation::rates_into`] in single precision: each rate is the f64 rate of the entry
    /// rounded to f32 (tanh: [`tanh_f32_into`], within an ulp of it).
    pub fn rates_into_f32(self, v: &[f32], out: &mut [f32]) {
        match self {
            Activation::Tanh => tanh_f32_into(v, out),
            _ => {
                for (o, &v) in out.iter_mut().zip(v) {
                    *o = self.rate(v as f64) as f32;
                }
            }
        }
    }

    /// The slope s'(v) (s'(0) = 0 for relu, as PyTorch).
    pub fn slope(self, v: f64) -> f64 {
        self.slope_at_rate(v, self.rate(v))
    }

    /// The slope s'(v) given the rate s = s(v) (saves a second tanh or exp), in f64 or f32.
    pub fn slope_at_rate<T: Real>(self, v: T, s: T) -> T {
        let (zero, one) = (T::round_from(0.0), T::round_from(1.0));
        match self {
            Activation::Tanh => one - s * s,
            Activation::Relu => {
                if v > zero {
                    one
                } else {
                    zero
                }
            }
            Activation::Sigmoid => s * (one - s),
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

widest_fn! {
    /// `out = tanh(v)` in single precision, branch-free so that it vectorises: each entry
    /// widened to f64, [`tanh_rational`] for |x| < 0.625, `1 - 2 / (exp(2|x|) + 1)` with the
    /// sign of x (|x| capped at 22, where it is 1 in f64) by [`exp_for_f32`] beyond, rounded
    /// to f32. Both branches have a relative error below 1e-9, so the result is within an ulp
    /// of the correctly rounded tanh (tested against [`tanh`]).
    pub fn tanh_f32_into(v: &[f32], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(v) {
            let x = v as f64;
            let a = x.abs();
            // NaN stays NaN (a comparison with NaN is false).
            let capped = if a > 22.0 { 22.0 } else { a };
            let large = 1.0 - 2.0 / (exp_for_f32(2.0 * capped) + 1.0);
            let t = if a < 0.625 { tanh_rational(x) } else { large };
            *o = t.copysign(x) as f32; // the sign of -0 too

        }
    }
}

/// `exp(y)` for y in [0, 44] to a relative error below 2e-10, branch-free: y = k ln 2 + r with
/// k the nearest integer to y / ln 2 (read from the bits of `y / ln 2 + 1.5 * 2^52`) and
/// |r| <= ln 2 / 2, then 2^k times the Taylor polynomial of exp(r) to degree 8.
#[inline(always)]
fn exp_for_f32(y: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer
    let t = y * std::f64::consts::LOG2_E + SHIFT;
    let k = t - SHIFT;
    let r = y - k * std::f64::consts::LN_2;
    // 1/n! for n = 8, 7, ..., 0 (Horner).
    const TAYLOR: [f64; 9] = [
        1.0 / 40320.0,
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ];
    let mut p = TAYLOR[0];
    for c in &TAYLOR[1..] {
        p = p * r + c;
    }
    // k sits in the low bits of t: 2^k = bits (k + 1023) << 52.
    let k_bits = t.to_bits().wrapping_sub(SHIFT.to_bits());
    p * f64::from_bits(k_bits.wrapping_add(1023) << 52)
}
