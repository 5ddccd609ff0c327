//! Studies built on the layers below: the checks of spec 6 (`lcsim check`, on the rate network
//! and, in `check_meta`, on the meta-learning system of spec 7.1), the alignment of
//! the variants with RBP over alpha (`lcsim align`), one batch from saved weights (`lcsim
//! equilibrium`'s R.npz), trajectories of chosen samples (`lcsim simulate`), H and the test
//! loss across runs (`lcsim compare`) and the training throughput (`lcsim throughput`).
//! The long ones hand each line of their report to a callback `say` as soon as it is known,
//! and report how far they are to [`progress`].

pub mod agreement;
pub mod alignment;
pub mod alignment_study;
pub mod batch_study;
pub mod check;
pub mod check_conv;
pub mod check_meta;
pub mod compare;
pub mod progress;
pub mod simulate;
pub mod simulate_figures;
pub mod simulate_job;
pub mod simulate_meta;
pub mod simulate_write;
pub mod throughput;
