//! The flags every family of subcommands shares: dynamics, solver, loss, config source.

use crate::control::{ControllerSettings, LossScale};
use crate::error::{invalid, Result};
use crate::solve::{AdaptiveSettings, EulerSettings, SolverMethod, SolverSettings, StopCriterion};
use crate::system::loss::Loss;
use crate::system::rate::Topology;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Network connectivity on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelKind {
    /// Recurrent network (dense W).
    Rnn,
    /// Layered feedforward network (block-structured W).
    Ff,
}

/// Time constants and controller gains (spec 3).
#[derive(Args, Debug, Clone)]
pub struct DynamicsArgs {
    /// Time constant of the network units v, y (time units).
    #[arg(long, default_value_t = 1.0)]
    pub tau_v: f64,
    /// Time constant of the integral controller u_i.
    #[arg(long, default_value_t = 1.0)]
    pub tau_u: f64,
    /// Time constant of the hidden control e.
    #[arg(long, default_value_t = 1.0)]
    pub tau_e: f64,
    /// Leak alpha of the integral controller (> 0; small = strong control).
    #[arg(long, default_value_t = 0.1)]
    pub alpha: f64,
    /// Integral gain k_i (>= 0).
    #[arg(long, default_value_t = 1.0)]
    pub k_i: f64,
    /// Proportional gain k_p (>= 0; reference 0).
    #[arg(long, default_value_t = 0.0)]
    pub k_p: f64,
}

impl DynamicsArgs {
    /// The validated controller settings.
    pub fn controller(&self) -> Result<ControllerSettings> {
        let c = ControllerSettings {
            tau_u: self.tau_u,
            tau_e: self.tau_e,
            alpha: self.alpha,
            k_i: self.k_i,
            k_p: self.k_p,
        };
        c.validate()?;
        crate::error::ensure_positive("tau_v", self.tau_v)?;
        Ok(c)
    }
}

/// How steady states are reached.
#[derive(Args, Debug, Clone)]
pub struct SolverArgs {
    /// Steady-state method (anderson and newton-krylov check stability and fall back to
    /// tsit45 for samples they do not settle).
    #[arg(long, value_enum, default_value_t = SolverMethod::default())]
    pub solver: SolverMethod,
    /// Step of forward Euler (time units; dt = 1 with all tau = 1 is the reference iteration).
    #[arg(long, default_value_t = 0.2)]
    pub dt: f64,
    /// Converged when every component of the vector field satisfies |r_i| <= atol + rtol |z_i|.
    #[arg(long, default_value_t = 1e-6)]
    pub atol: f64,
    /// Relative part of the convergence test (see --atol).
    #[arg(long, default_value_t = 1e-6)]
    pub rtol: f64,
    /// Give up at this time (time units).
    #[arg(long, default_value_t = 1e3)]
    pub max_time: f64,
    /// Give up after this many steps.
    #[arg(long, default_value_t = 100_000)]
    pub max_steps: usize,
    /// Relative local-error tolerance of the adaptive integrators.
    #[arg(long, default_value_t = 1e-8)]
    pub ode_rtol: f64,
    /// Absolute local-error tolerance of the adaptive integrators (keep well below --atol).
    #[arg(long, default_value_t = 1e-10)]
    pub ode_atol: f64,
}

impl SolverArgs {
    /// The validated steady-state options.
    pub fn options(&self) -> Result<SolverSettings> {
        let o = SolverSettings {
            method: self.solver,
            euler: EulerSettings { dt: self.dt },
            stop: StopCriterion {
                atol: self.atol,
                rtol: self.rtol,
                max_time: self.max_time,
                max_steps: self.max_steps,
                ..StopCriterion::default()
            },
            adaptive: AdaptiveSettings {
                rtol: self.ode_rtol,
                atol: self.ode_atol,
                ..AdaptiveSettings::default()
            },
            ..SolverSettings::default()
        };
        o.validate().map_err(rename_solver_field)?;
        Ok(o)
    }
}

/// Config-file names (`solver.atol`) become flag names (`--atol`) on the command line.
fn rename_solver_field(e: crate::error::LcsimError) -> crate::error::LcsimError {
    match e {
        crate::error::LcsimError::InvalidValue {
            field,
            value,
            allowed,
        } => crate::error::LcsimError::InvalidValue {
            field: format!(
                "--{}",
                field.trim_start_matches("solver.").replace('_', "-")
            ),
            value,
            allowed,
        },
        other => other,
    }
}

/// The loss and how a batch combines it.
#[derive(Args, Debug, Clone)]
pub struct LossArgs {
    /// Loss read from the output units.
    #[arg(long, value_enum, default_value_t = Loss::CrossEntropy)]
    pub loss: Loss,
    /// batch-mean: controllers driven by grad L / B, updates summed (reference);
    /// per-sample: driven by grad L, updates averaged.
    #[arg(long, value_enum, default_value_t = LossScale::BatchMean)]
    pub loss_scale: LossScale,
}

/// Options of the run-based subcommands.
#[derive(Args, Debug)]
pub struct ConfigSource {
    /// A TOML config (see `lcsim config` for every key, its meaning and default).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one key, e.g. --set controller.alpha=0.05 (repeatable; TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl ConfigSource {
    /// The config file (or the documented default) with the overrides applied, validated.
    pub fn load(&self) -> Result<crate::config::Config> {
        crate::config::Config::load(self.config.as_deref(), &self.overrides)
    }
}

/// `--hidden 256` (rnn) or `--hidden 256,256` (ff).
pub fn parse_topology(model: ModelKind, hidden: &str) -> Result<Topology> {
    let sizes: Vec<usize> = hidden
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| invalid("--hidden", hidden, "positive integers separated by commas"))?;
    match (model, sizes.as_slice()) {
        (ModelKind::Rnn, [n]) => Ok(Topology::Recurrent { hidden: *n }),
        (ModelKind::Rnn, _) => Err(invalid("--hidden", hidden, "one size for --model rnn")),
        (ModelKind::Ff, _) => Ok(Topology::Layered { layers: sizes }),
    }
}
