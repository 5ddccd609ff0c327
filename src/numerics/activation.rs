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

/// tanh(x) within a few ulp of the correctly rounded value, without branches so that loops
/// over slices vectorise ([`Activation::rates_into`]): the rational approximation of Cephes'
/// tanh on |x| < 0.625, `1 - 2 / (exp(2|x|) + 1)` with the sign of x up to |x| = 22 (exp by
/// [`exp_moderate`]), +-1 beyond; both branches are computed and one is selected.
#[inline(always)]
pub fn tanh(x: f64) -> f64 {
    let a = x.abs();
    let z = x * x;
    let p =
        (-9.643_991_794_250_523e-1 * z - 9.928_772_310_019_186e1) * z - 1.614_687_684_417_084_5e3;
    let q = ((z + 1.128_116_784_916_329_3e2) * z + 2.235_488_390_601_004_6e3) * z
        + 4.844_063_053_251_255e3;
    let small = x + x * z * p / q;
    let large = (1.0 - 2.0 / (exp_moderate(2.0 * a.min(22.0)) + 1.0)).copysign(x);
    let t = if a < 0.625 { small } else { large };
    let t = if a < 22.0 { t } else { 1.0f64.copysign(x) };
    // x for +-0 (keeps the sign) and NaN.
    if x == 0.0 || a.is_nan() {
        x
    } else {
        t
    }
}

widest_fn! {
    /// `out = tanh(v)` entrywise ([`tanh`], compiled for the widest vector unit).
    pub fn tanh_into(v: &[f64], out: &mut [f64]) {
        for (o, &v) in out.iter_mut().zip(v) {
            *o = tanh(v);
        }
    }
}

/// `exp(y)` for `0 <= y <= 700` within about an ulp, without branches: `y = k ln 2 + r`
/// (Cody-Waite, |r| <= ln 2 / 2), `exp(r)` by its Taylor series to degree 13 (truncation
/// below 1e-17), and `2^k` written into the exponent bits.
#[inline(always)]
pub fn exp_moderate(y: f64) -> f64 {
    // Adding 1.5 * 2^52 rounds to an integer held in the low bits of the mantissa.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
    let shifted = y * std::f64::consts::LOG2_E + SHIFT;
    let k = shifted - SHIFT;
    let r = (y - k * LN2_HI) - k * LN2_LO;
    const C: [f64; 12] = [
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
    ];
    let mut e = C[0];
    for c in &C[1..] {
        e = e * r + c;
    }
    e = (e * r + 1.0) * r + 1.0;
    // The low 12 bits of `shifted`'s bit pattern plus 1023 are k + 1023: 2^k's exponent.
    let two_k = f64::from_bits(shifted.to_bits().wrapping_add(1023) << 52);
    e * two_k
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}
