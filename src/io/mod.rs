//! File formats: figures (PNG or SVG), NumPy `.npy`/`.npz`, parameters and data in them, and the per-epoch metrics
//! table (metrics.csv), CSV text, atomic writes,
//! folder locks.

pub mod atomic;
pub mod csv_text;
pub mod figure_format;
pub mod interop;
pub mod lock;
pub mod metrics;
pub mod npz;
