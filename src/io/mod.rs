//! File formats: NumPy `.npy`/`.npz`, parameters and data in them, and the per-epoch metrics
//! table (metrics.csv).

pub mod interop;
pub mod metrics;
pub mod npz;
