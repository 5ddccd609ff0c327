//! Seeded, portable random numbers: ChaCha8 with explicit conversions, so the same
//! seed gives the same numbers on every platform and crate version.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// The project's random number generator.
#[derive(Clone, Debug)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// A generator from a 64-bit seed.
    pub fn seed_from_u64(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in [0, 1) with 53 random bits: `(next_u64 >> 11) * 2^-53`.
    pub fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform_range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal by the Box-Muller transform (one draw per call).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // in (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `out[i] = keep * out[i] + kick * xi_i` with standard normal xi (Box-Muller, both draws
    /// of each pair used).
    pub fn add_normals(&mut self, out: &mut [f64], keep: f64, kick: f64) {
        for pair in out.chunks_mut(2) {
            let u1 = 1.0 - self.uniform();
            let (s, c) = (std::f64::consts::TAU * self.uniform()).sin_cos();
            let r = (-2.0 * u1.ln()).sqrt();
            for (v, z) in pair.iter_mut().zip([r * c, r * s]) {
                *v = keep * *v + kick * z;
            }
        }
    }
}
