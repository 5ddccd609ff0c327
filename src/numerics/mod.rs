//! Hand-kept numerics every layer uses: the batched products (faer), the rate
//! nonlinearities with their own fast tanh, and the seeded random streams.

pub mod activation;
pub mod conv;
pub mod linalg;
pub mod norm;
pub mod pool;
pub mod real;
pub mod rng;
pub mod simd;
pub mod spectral;
