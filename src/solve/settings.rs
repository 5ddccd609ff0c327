//! The settings of a steady-state solve, one struct per method (as diffsol configures each
//! solver on its own): the stopping criterion every method shares, forward Euler's step, the
//! adaptive integrators' local-error control, Anderson's mixing, Newton-Krylov's inner
//! solve, and what the accelerated solvers share (iteration cap, stability check, fallback,
//! chunks). [`SolverSettings`] gathers them with the method to run; each solver reads only
//! its own part. The config file keeps them as one flat `[solver]` table (`crate::config`).

use crate::error::{ensure_non_negative, ensure_positive, invalid, Result};
use serde::{Deserialize, Serialize};

/// How the ODE is integrated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum SolverMethod {
    /// Fixed-step forward Euler, `z += dt * r(z) / tau` (with dt = 1, tau = 1: the reference iteration).
    Euler,
    /// Tsitouras 5(4) explicit Runge-Kutta (diffsol), adaptive.
    Tsit45,
    /// Variable-order BDF (diffsol), dense LU.
    Bdf,
    /// ESDIRK 3(4) singly diagonally implicit Runge-Kutta (diffsol), dense LU.
    Esdirk34,
    /// TR-BDF2 (diffsol), dense LU.
    TrBdf2,
    /// Anderson acceleration of the Euler map `z + h r(z) / tau` (batched; does not follow the flow).
    #[default]
    Anderson,
    /// Matrix-free Newton-Krylov on `r(z) = 0`: GMRES on J v, backtracking line search (batched).
    NewtonKrylov,
    /// Adam on the state along a gradient (LCP-EBD's reference descent, chosen by
    /// `ebd.descent = "adam"`): appears in records, never as `solver.method`.
    #[serde(skip)]
    #[cfg_attr(feature = "cli", value(skip))]
    AdamOnState,
}

impl SolverMethod {
    /// Every method, for tests and reports.
    pub const ALL: [SolverMethod; 7] = [
        SolverMethod::Euler,
        SolverMethod::Tsit45,
        SolverMethod::Bdf,
        SolverMethod::Esdirk34,
        SolverMethod::TrBdf2,
        SolverMethod::Anderson,
        SolverMethod::NewtonKrylov,
    ];

    /// The methods that integrate the ODE (and can record trajectories).
    pub const INTEGRATORS: [SolverMethod; 5] = [
        SolverMethod::Euler,
        SolverMethod::Tsit45,
        SolverMethod::Bdf,
        SolverMethod::Esdirk34,
        SolverMethod::TrBdf2,
    ];

    /// True for the methods that integrate the ODE in time; false for the accelerated
    /// equilibrium solvers (Anderson, Newton-Krylov).
    pub fn follows_flow(self) -> bool {
        !matches!(
            self,
            SolverMethod::Anderson | SolverMethod::NewtonKrylov | SolverMethod::AdamOnState
        )
    }

    /// Name as used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SolverMethod::Euler => "euler",
            SolverMethod::Tsit45 => "tsit45",
            SolverMethod::Bdf => "bdf",
            SolverMethod::Esdirk34 => "esdirk34",
            SolverMethod::TrBdf2 => "tr-bdf2",
            SolverMethod::Anderson => "anderson",
            SolverMethod::NewtonKrylov => "newton-krylov",
            SolverMethod::AdamOnState => "adam-on-state",
        }
    }
}

/// The integrator that re-solves samples an accelerated solver could not settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// Keep the failed record.
    None,
    Euler,
    #[default]
    Tsit45,
    Bdf,
    Esdirk34,
    TrBdf2,
}

impl Fallback {
    /// The integrator, if any.
    pub fn method(self) -> Option<SolverMethod> {
        match self {
            Fallback::None => None,
            Fallback::Euler => Some(SolverMethod::Euler),
            Fallback::Tsit45 => Some(SolverMethod::Tsit45),
            Fallback::Bdf => Some(SolverMethod::Bdf),
            Fallback::Esdirk34 => Some(SolverMethod::Esdirk34),
            Fallback::TrBdf2 => Some(SolverMethod::TrBdf2),
        }
    }
}

/// How the steady-state test measures a sample's residual r against its state z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopNorm {
    /// Every component: `|r_i| <= atol + rtol |z_i|`.
    #[default]
    Entrywise,
    /// The whole state: `||r||_2 <= atol + rtol ||z||_2`. With tau = 1 and Euler's dt = 1
    /// this is the reference's test (spec 4: relative L2 change of the state per step).
    L2,
}

/// The floating-point type of forward Euler's iterations (`solver.precision`). States,
/// records and everything after the solve stay f64; f32 rounds the system's parameters and
/// input drive once per chunk of a solve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Double precision (every method).
    #[default]
    F64,
    /// Single precision: forward Euler of the free system, of LCP-DI and of RBP's adjoint, for
    /// systems with a single-precision form (the rate networks); steady-state tests down to
    /// [`Precision::F32_FLOOR`]. Fields without one run in f64.
    F32,
}

impl Precision {
    /// The smallest `solver.atol` f32 iterations can meet: their residuals are computed to a
    /// few times f32's unit roundoff (6e-8) of the state and the products' magnitudes.
    pub const F32_FLOOR: f64 = 1e-6;
    /// The largest `solver.divergence_bound` in f32: the L2 test's sum of squares of a state
    /// with entries below it stays far from f32's overflow (3.4e38).
    pub const F32_DIVERGENCE_BOUND: f64 = 1e15;

    /// Name as in the config.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F64 => "f64",
            Precision::F32 => "f32",
        }
    }
}

/// When every method stops: converged when the residual passes the steady-state test
/// ([`StopNorm`]: each `|r_i| <= atol + rtol |z_i|`, or `||r||_2 <= atol + rtol ||z||_2`);
/// given up at `max_time` or after `max_steps`; diverged when a state entry exceeds
/// `divergence_bound` (or anything is non-finite).
#[derive(Clone, Debug, PartialEq)]
pub struct StopCriterion {
    /// Absolute part of the steady-state test.
    pub atol: f64,
    /// Relative part of the steady-state test.
    pub rtol: f64,
    /// Entrywise or whole-state (L2) test.
    pub norm: StopNorm,
    /// Give up at this time.
    pub max_time: f64,
    /// Give up after this many integrator steps.
    pub max_steps: usize,
    /// A state with an entry beyond this magnitude counts as diverged.
    pub divergence_bound: f64,
}

impl Default for StopCriterion {
    fn default() -> Self {
        StopCriterion {
            atol: 1e-6,
            rtol: 1e-6,
            norm: StopNorm::Entrywise,
            max_time: 1e3,
            max_steps: 100_000,
            divergence_bound: 1e8,
        }
    }
}

/// Forward Euler: `z += dt * r(z) / tau`.
#[derive(Clone, Debug, PartialEq)]
pub struct EulerSettings {
    /// Step (time units of tau).
    pub dt: f64,
}

impl Default for EulerSettings {
    fn default() -> Self {
        EulerSettings { dt: 0.2 }
    }
}

/// The adaptive integrators of diffsol (tsit45, bdf, esdirk34, tr-bdf2): local-error control.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveSettings {
    /// Relative local-error tolerance.
    pub rtol: f64,
    /// Absolute local-error tolerance (keep it well below the stopping `atol`).
    pub atol: f64,
    /// First step (0: diffsol's heuristic).
    pub initial_step: f64,
}

impl Default for AdaptiveSettings {
    fn default() -> Self {
        AdaptiveSettings {
            rtol: 1e-8,
            atol: 1e-10,
            initial_step: 0.0,
        }
    }
}

/// Anderson acceleration (memory m, damping beta) of the Euler map `z + h r(z) / tau`.
#[derive(Clone, Debug, PartialEq)]
pub struct AndersonSettings {
    /// Step h of the Euler map it accelerates.
    pub step: f64,
    /// Number of previous iterates mixed (m >= 1).
    pub memory: usize,
    /// Damping (mixing) factor beta in (0, 1].
    pub damping: f64,
    /// Tikhonov regularisation of its least-squares problem, relative to its scale.
    pub regularization: f64,
}

impl Default for AndersonSettings {
    fn default() -> Self {
        AndersonSettings {
            step: 1.0,
            memory: 10,
            damping: 1.0,
            regularization: 1e-10,
        }
    }
}

/// Newton-Krylov: the inner GMRES solve of `J d = -r`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewtonKrylovSettings {
    /// GMRES dimension per Newton step.
    pub krylov_dim: usize,
    /// GMRES stops at `|J d + r| <= forcing |r|`.
    pub forcing: f64,
}

impl Default for NewtonKrylovSettings {
    fn default() -> Self {
        NewtonKrylovSettings {
            krylov_dim: 30,
            forcing: 1e-3,
        }
    }
}

/// The check that an equilibrium found by an accelerated solver is stable: no Ritz value of
/// the Jacobian `diag(1/tau) dr/dz` in the right half-plane. Unstable ones are reported as
/// such and go to the fallback.
#[derive(Clone, Debug, PartialEq)]
pub struct StabilityCheck {
    /// Whether to check.
    pub enabled: bool,
    /// Arnoldi steps (Jacobian products).
    pub dim: usize,
}

impl Default for StabilityCheck {
    fn default() -> Self {
        StabilityCheck {
            enabled: true,
            dim: 20,
        }
    }
}

/// The flow certificate of an accelerated solver's equilibrium z* (spec 2.2: the flow
/// equilibrium): the flow from the same start is integrated by the fallback integrator
/// (Tsit45 if none) to the loose steady-state test `|r_i| <= tolerance (1 + |z_i|)` (local
/// error tolerances `tolerance / 100` relative, `tolerance / 1000` absolute), to a point zf
/// where the flow has nearly settled; Newton-Krylov from zf (the solver's settings, with
/// its stability check) polishes zf into the equilibrium zf approaches. z* is certified when
/// that equilibrium is z*: `max_i |z_i - z*_i| / (1 + |z*_i|) <= tolerance`. Another stable
/// equilibrium (a "third answer") is rejected: the sample goes to the fallback (or, without
/// one, is reported `Uncertified`). Evidence, not a proof: a flow that leaves Newton's basin
/// of the polished equilibrium after zf, or an integration error at the loose tolerance
/// that crosses a basin boundary, is not seen. Fields whose equilibrium is not defined by
/// their flow skip it ([`crate::solve::VectorField::certify_against_flow`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FlowCertificate {
    /// Whether to certify.
    pub enabled: bool,
    /// The loose steady-state tolerance of the flow integration, in (0, 1).
    pub tolerance: f64,
}

impl Default for FlowCertificate {
    fn default() -> Self {
        FlowCertificate {
            enabled: true,
            tolerance: 1e-3,
        }
    }
}

/// What the accelerated solvers (Anderson, Newton-Krylov) share.
#[derive(Clone, Debug, PartialEq)]
pub struct AcceleratedSettings {
    /// Iteration cap (Anderson iterations, Newton steps).
    pub max_iterations: usize,
    /// The stability check of the equilibria found.
    pub stability: StabilityCheck,
    /// The flow certificate of the equilibria found.
    pub certify: FlowCertificate,
    /// Samples that did not converge (or were unstable) are solved again from their start
    /// by this integrator ("none": keep the failed record).
    pub fallback: Fallback,
    /// Samples solved together in one batched iteration (by the accelerated solvers, forward
    /// Euler, and Tsit45 in [`crate::solve::solve_trajectories`]). Fixed chunks make results
    /// independent of the number of threads.
    pub chunk: usize,
}

impl Default for AcceleratedSettings {
    fn default() -> Self {
        AcceleratedSettings {
            max_iterations: 1000,
            stability: StabilityCheck::default(),
            certify: FlowCertificate::default(),
            fallback: Fallback::Tsit45,
            chunk: 16,
        }
    }
}

/// Settings of a steady-state solve: the method and the settings of every method (those of
/// the others are kept, so that a fallback or a switch of method finds its own). Serde and
/// Debug use the flat keys of the config file's `[solver]` table (`crate::config`).
#[derive(Clone, PartialEq, Default)]
pub struct SolverSettings {
    /// The method to run.
    pub method: SolverMethod,
    /// The floating-point type of forward Euler's iterations.
    pub precision: Precision,
    /// When to stop (every method).
    pub stop: StopCriterion,
    /// Forward Euler.
    pub euler: EulerSettings,
    /// The adaptive integrators.
    pub adaptive: AdaptiveSettings,
    /// Anderson acceleration.
    pub anderson: AndersonSettings,
    /// Newton-Krylov.
    pub newton_krylov: NewtonKrylovSettings,
    /// What Anderson and Newton-Krylov share.
    pub accelerated: AcceleratedSettings,
}

impl SolverSettings {
    /// These settings with `method` to run.
    pub fn with_method(&self, method: SolverMethod) -> SolverSettings {
        SolverSettings {
            method,
            ..self.clone()
        }
    }

    /// The settings for following the flow in time (trajectories): these settings when the
    /// method is an integrator, else with the fallback integrator (Tsit45 if none).
    pub fn integrator(&self) -> SolverSettings {
        if self.method.follows_flow() {
            self.clone()
        } else {
            let fallback = self.accelerated.fallback.method();
            self.with_method(fallback.unwrap_or(SolverMethod::Tsit45))
        }
    }

    /// Checks every field (names as in the config file's `solver` table). The first invalid
    /// key is the one reported, so the order of the checks is kept as it is.
    pub fn validate(&self) -> Result<()> {
        let (stop, adaptive) = (&self.stop, &self.adaptive);
        let (anderson, accelerated) = (&self.anderson, &self.accelerated);
        ensure_positive("solver.dt", self.euler.dt)?;
        ensure_positive("solver.atol", stop.atol)?;
        ensure_non_negative("solver.rtol", stop.rtol)?;
        ensure_positive("solver.max_time", stop.max_time)?;
        ensure_positive("solver.ode_rtol", adaptive.rtol)?;
        ensure_positive("solver.ode_atol", adaptive.atol)?;
        ensure_positive("solver.divergence_bound", stop.divergence_bound)?;
        ensure_non_negative("solver.initial_step", adaptive.initial_step)?;
        for (key, value) in [
            ("solver.max_steps", stop.max_steps),
            ("solver.max_iterations", accelerated.max_iterations),
            ("solver.anderson_memory", anderson.memory),
            ("solver.krylov_dim", self.newton_krylov.krylov_dim),
            ("solver.stability_dim", accelerated.stability.dim),
            ("solver.chunk", accelerated.chunk),
        ] {
            if value == 0 {
                return Err(invalid(key, 0, "an integer >= 1"));
            }
        }
        if self.precision == Precision::F32 {
            if self.method != SolverMethod::Euler {
                return Err(invalid(
                    "solver.precision",
                    format!("\"f32\" with solver.method = \"{}\"", self.method.name()),
                    "\"f32\" with solver.method = \"euler\" only, or \"f64\"",
                ));
            }
            let bound = stop.divergence_bound;
            if bound > Precision::F32_DIVERGENCE_BOUND {
                return Err(invalid(
                    "solver.divergence_bound",
                    format!("{bound:e} with solver.precision = \"f32\""),
                    &format!(
                        "<= {:e} in f32 (its squares must not overflow), or solver.precision = \"f64\"",
                        Precision::F32_DIVERGENCE_BOUND
                    ),
                ));
            }
            if stop.atol < Precision::F32_FLOOR {
                return Err(invalid(
                    "solver.atol",
                    format!("{} with solver.precision = \"f32\"", stop.atol),
                    &format!(
                        ">= {:e} in f32 (its residuals are accurate to ~1e-7 of the state), or \
                         solver.precision = \"f64\"",
                        Precision::F32_FLOOR
                    ),
                ));
            }
        }
        if self.method == SolverMethod::AdamOnState {
            return Err(invalid(
                "solver.method",
                "adam-on-state",
                "a steady-state solver; Adam on the state is LCP-EBD's ebd.descent = \"adam\"",
            ));
        }
        ensure_positive("solver.anderson_step", anderson.step)?;
        let d = anderson.damping;
        if !(d > 0.0 && d <= 1.0) {
            return Err(invalid("solver.anderson_damping", d, "a number in (0, 1]"));
        }
        ensure_non_negative("solver.anderson_regularization", anderson.regularization)?;
        let c = accelerated.certify.tolerance;
        if !(c > 0.0 && c < 1.0) {
            return Err(invalid("solver.certify_tolerance", c, "a number in (0, 1)"));
        }
        let f = self.newton_krylov.forcing;
        if !(f > 0.0 && f < 1.0) {
            return Err(invalid("solver.newton_forcing", f, "a number in (0, 1)"));
        }
        Ok(())
    }
}
