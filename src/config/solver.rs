//! `[solver]`: the flat table of the config file (every method's keys side by side, as
//! `lcsim config` prints them) and its conversion to and from the per-method
//! [`SolverSettings`]. Values are checked by [`SolverSettings::validate`]. The flat form
//! is also what `SolverSettings` prints as Debug (the `settings` record of
//! `lcsim check --json`).

use crate::solve::{
    AcceleratedSettings, AdaptiveSettings, AndersonSettings, EulerSettings, Fallback,
    FlowCertificate, NewtonKrylovSettings, Precision, SolverMethod, SolverSettings, StabilityCheck,
    StopCriterion, StopNorm,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The keys of `[solver]`, in the order of the file. Named as the one options struct was
/// before the per-method settings, because its Debug form (with this name) is part of
/// `lcsim check --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SteadyStateOptions {
    method: SolverMethod,
    precision: Precision,
    dt: f64,
    atol: f64,
    rtol: f64,
    stop_norm: StopNorm,
    max_time: f64,
    max_steps: usize,
    ode_rtol: f64,
    ode_atol: f64,
    initial_step: f64,
    divergence_bound: f64,
    max_iterations: usize,
    anderson_step: f64,
    anderson_memory: usize,
    anderson_damping: f64,
    anderson_regularization: f64,
    krylov_dim: usize,
    newton_forcing: f64,
    stability_check: bool,
    stability_dim: usize,
    certify_flow: bool,
    certify_tolerance: f64,
    fallback: Fallback,
    chunk: usize,
}

impl Default for SteadyStateOptions {
    fn default() -> Self {
        SteadyStateOptions::from(&SolverSettings::default())
    }
}

impl From<&SolverSettings> for SteadyStateOptions {
    fn from(s: &SolverSettings) -> Self {
        SteadyStateOptions {
            method: s.method,
            precision: s.precision,
            dt: s.euler.dt,
            atol: s.stop.atol,
            rtol: s.stop.rtol,
            stop_norm: s.stop.norm,
            max_time: s.stop.max_time,
            max_steps: s.stop.max_steps,
            ode_rtol: s.adaptive.rtol,
            ode_atol: s.adaptive.atol,
            initial_step: s.adaptive.initial_step,
            divergence_bound: s.stop.divergence_bound,
            max_iterations: s.accelerated.max_iterations,
            anderson_step: s.anderson.step,
            anderson_memory: s.anderson.memory,
            anderson_damping: s.anderson.damping,
            anderson_regularization: s.anderson.regularization,
            krylov_dim: s.newton_krylov.krylov_dim,
            newton_forcing: s.newton_krylov.forcing,
            stability_check: s.accelerated.stability.enabled,
            stability_dim: s.accelerated.stability.dim,
            certify_flow: s.accelerated.certify.enabled,
            certify_tolerance: s.accelerated.certify.tolerance,
            fallback: s.accelerated.fallback,
            chunk: s.accelerated.chunk,
        }
    }
}

impl From<SteadyStateOptions> for SolverSettings {
    fn from(k: SteadyStateOptions) -> Self {
        SolverSettings {
            method: k.method,
            precision: k.precision,
            stop: StopCriterion {
                atol: k.atol,
                rtol: k.rtol,
                norm: k.stop_norm,
                max_time: k.max_time,
                max_steps: k.max_steps,
                divergence_bound: k.divergence_bound,
            },
            euler: EulerSettings { dt: k.dt },
            adaptive: AdaptiveSettings {
                rtol: k.ode_rtol,
                atol: k.ode_atol,
                initial_step: k.initial_step,
            },
            anderson: AndersonSettings {
                step: k.anderson_step,
                memory: k.anderson_memory,
                damping: k.anderson_damping,
                regularization: k.anderson_regularization,
            },
            newton_krylov: NewtonKrylovSettings {
                krylov_dim: k.krylov_dim,
                forcing: k.newton_forcing,
            },
            accelerated: AcceleratedSettings {
                max_iterations: k.max_iterations,
                stability: StabilityCheck {
                    enabled: k.stability_check,
                    dim: k.stability_dim,
                },
                certify: FlowCertificate {
                    enabled: k.certify_flow,
                    tolerance: k.certify_tolerance,
                },
                fallback: k.fallback,
                chunk: k.chunk,
            },
        }
    }
}

/// `[solver]` is written as its flat keys.
impl Serialize for SolverSettings {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SteadyStateOptions::from(self).serialize(serializer)
    }
}

/// `[solver]` is read from its flat keys (unknown keys rejected, missing ones defaulted).
impl<'de> Deserialize<'de> for SolverSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        SteadyStateOptions::deserialize(deserializer).map(SolverSettings::from)
    }
}

/// Debug prints the flat keys (see `SteadyStateOptions` above).
impl std::fmt::Debug for SolverSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        SteadyStateOptions::from(self).fmt(f)
    }
}
