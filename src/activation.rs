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
            Activation::Tanh => tanh(v),
            Activation::Relu => v.max(0.0),
            Activation::Sigmoid => sigmoid(v),
        }
    }

    /// The slope s'(v).
    pub fn slope(self, v: f64) -> f64 {
        match self {
            Activation::Tanh => 1.0 - tanh(v).powi(2),
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
                let t = tanh(v);
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

/// tanh(x) within a few ulp of the correctly rounded value, branch-free so that loops over
/// it vectorise: the rational approximation of Cephes' tanh on |x| < 0.625, else
/// `1 - 2 / (exp(2|x|) + 1)` with the sign of x ([`exp_positive`]; exactly +-1 beyond
/// |x| = 22, where tanh rounds to 1).
#[inline]
pub fn tanh(x: f64) -> f64 {
    let a = x.abs();
    let z = x * x;
    let p =
        (-9.643_991_794_250_523e-1 * z - 9.928_772_310_019_186e1) * z - 1.614_687_684_417_084_5e3;
    let q = ((z + 1.128_116_784_916_329_3e2) * z + 2.235_488_390_601_004_6e3) * z
        + 4.844_063_053_251_255e3;
    let small = x + x * (z * p / q);
    let large = (1.0 - 2.0 / (exp_positive(2.0 * a.min(22.0)) + 1.0)).copysign(x);
    let t = if a < 0.625 { small } else { large };
    // tanh is odd: the sign of x (also for -0); NaN stays NaN.
    if x.is_nan() {
        x
    } else {
        t.copysign(x)
    }
}

/// exp(y) for 0 <= y <= 709 without a libm call: y = k ln 2 + r with |r| <= ln 2 / 2
/// (ln 2 in two parts), a degree-13 Taylor polynomial for exp(r) (truncation < 1e-17),
/// times 2^k built from its bits.
#[inline]
fn exp_positive(y: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer
                                                // ln 2 = LN2_HI + LN2_LO, LN2_HI with trailing zero bits so that k * LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let shifted = y * std::f64::consts::LOG2_E + SHIFT;
    let k = shifted - SHIFT;
    let r = (y - k * LN2_HI) - k * LN2_LO;
    let mut poly = INV_FACT[13];
    for c in INV_FACT[..13].iter().rev() {
        poly = poly * r + c;
    }
    // k sits in the low bits of `shifted`: 2^k = bits (k + 1023) << 52, in integer lanes.
    let k_int = shifted.to_bits().wrapping_sub(SHIFT.to_bits());
    poly * f64::from_bits(k_int.wrapping_add(1023) << 52)
}

/// 1 / d! for d = 0..13.
const INV_FACT: [f64; 14] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5_040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}
