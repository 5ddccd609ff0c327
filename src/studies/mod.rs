//! Studies built on the layers below: the checks of spec 6 (`lcsim check`), the alignment of
//! the variants with RBP over alpha (`lcsim align`), one batch from saved weights (`lcsim
//! equilibrium`'s R.npz) and trajectories of chosen samples (`lcsim simulate`).

pub mod alignment;
pub mod batch_study;
pub mod check;
pub mod simulate;
