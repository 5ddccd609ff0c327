#![doc = include_str!("../README.md")]
//! The layers, each importing only those above it in this list (see ARCHITECTURE.md):
//! numerics -> system (f, its Jacobians, the loss on the state) -> solve (steady states of a
//! vector field) -> control (the controlled system, psi) -> learn (plasticity, variants,
//! gradient baselines) -> optim -> data -> config -> train -> run folders, studies, plot, sweep,
//! cli (the binary's flags, with the cargo feature `cli`).
//! `io` (file formats) sits beside `system`: it knows parameters and the rate network only.
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod control;
pub mod data;
pub mod error;
pub mod io;
pub mod learn;
pub mod numerics;
pub mod optim;
pub mod plot;
pub mod run;
pub mod solve;
pub mod studies;
pub mod sweep;
pub mod system;
pub mod tasks;
pub mod train;
