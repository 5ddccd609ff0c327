//! The floating-point types the steady-state iterations run in (`solver.precision`): f64, the
//! default, and f32 for speed (products twice as fast, half the memory traffic). Everything
//! outside those iterations (updates, optimizer, checks) stays f64.

use crate::numerics::activation::Activation;
use crate::numerics::simd::add_scaled;

/// A scalar the batched kernels and forward Euler are written for.
pub trait Real:
    nalgebra::RealField + faer::traits::ComplexField + Copy + Send + Sync + 'static
{
    /// Zero.
    const ZERO: Self;
    /// The largest finite value.
    const LARGEST: Self;
    /// Positive infinity.
    const INFINITY: Self;
    /// `|x|` (inlined into the callers' vector loops).
    fn magnitude(self) -> Self;
    /// `x` rounded to this type.
    fn round_from(x: f64) -> Self;
    /// This value as f64 (exact).
    fn widen(self) -> f64;
    /// `z += dt * r` entrywise (`z + r * dt`).
    fn add_scaled(z: &mut [Self], r: &[Self], dt: f64);
    /// `out = s(v)` entrywise.
    fn rates_into(activation: Activation, v: &[Self], out: &mut [Self]);
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const LARGEST: f64 = f64::MAX;
    const INFINITY: f64 = f64::INFINITY;
    #[inline(always)]
    fn magnitude(self) -> f64 {
        self.abs()
    }
    #[inline(always)]
    fn round_from(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }
    fn add_scaled(z: &mut [f64], r: &[f64], dt: f64) {
        add_scaled(z, r, dt);
    }
    fn rates_into(activation: Activation, v: &[f64], out: &mut [f64]) {
        activation.rates_into(v, out);
    }
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const LARGEST: f32 = f32::MAX;
    const INFINITY: f32 = f32::INFINITY;
    #[inline(always)]
    fn magnitude(self) -> f32 {
        self.abs()
    }
    #[inline(always)]
    fn round_from(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn widen(self) -> f64 {
        self as f64
    }
    fn add_scaled(z: &mut [f32], r: &[f32], dt: f64) {
        crate::numerics::simd::add_scaled_f32(z, r, dt as f32);
    }
    fn rates_into(activation: Activation, v: &[f32], out: &mut [f32]) {
        activation.rates_into_f32(v, out);
    }
}
