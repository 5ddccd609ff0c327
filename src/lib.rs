#![doc = include_str!("../README.md")]
//! The layers, each importing only those above it in this list (see ARCHITECTURE.md):
//! numerics -> system (f, its Jacobians, the loss on the state) -> solve (steady states of a
//! vector field) -> control (the controlled system, psi) -> learn (plasticity, variants,
//! gradient baselines) -> optim -> config -> data -> train -> studies, io, plot, sweep.
pub mod alignment;
pub mod batch_study;
pub mod check;
pub mod config;
pub mod control;
pub mod data;
pub mod error;
pub mod interop;
pub mod learn;
pub mod metrics;
pub mod npz;
pub mod numerics;
pub mod optim;
pub mod plot;
pub mod run;
pub mod simulate;
pub mod solve;
pub mod sweep;
pub mod system;
pub mod train;
