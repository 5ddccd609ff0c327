//! Learning at the controlled equilibrium: the least-control plasticity rule (spec 2), the
//! four variants that produce psi* (spec 3), their learned feedback, and the gradient
//! baselines beside them (spec 5).

pub mod energy;
pub mod feedback;
pub mod meta_gradient;
pub mod plasticity;
pub mod rbp;
pub mod variant;
