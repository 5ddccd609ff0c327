//! `lcsim simulate` end to end: the network to simulate (a fresh one, a parameter file or a
//! trained run's latest weights), the folder `simulate-NAME`, the switch-on simulation of
//! chosen samples and its files (see [`crate::studies::simulate`]). For `model.kind = "meta"`
//! the samples are tasks and the system is the inner problem of meta-learning (theta: the
//! run's trained one, a parameter file's `theta`, or drawn from model.seed); see
//! [`crate::studies::simulate_meta`].

use crate::config::{Config, ModelKind};
use crate::error::{invalid, LcsimError, Result};
use crate::io::interop::{load_params, load_params_like};
use crate::io::npz::read_npz;
use crate::run::{trained_meta_system, RunDir, TrainedRun};
use crate::solve::Termination;
use crate::studies::simulate::{simulate_dataset_samples, SegmentRecord, SimulationSettings};
use crate::studies::simulate_meta::{simulate_meta_tasks, sinusoid_curves, write_meta_simulation};
use crate::studies::simulate_write::{
    ensure_new, simulation_path, validate_name, write_simulation, Provenance, Written,
};
use crate::system::meta::MetaSystem;
use crate::system::params::Params;
use crate::system::rate::RateNetwork;
use crate::system::EquilibriumSystem;
use crate::train::meta::meta_system;
use crate::train::{load_split, Trainable, TrainingState};
use std::path::{Path, PathBuf};

/// Where the simulated weights come from.
#[derive(Clone, Debug)]
pub enum NetworkSource {
    /// A fresh network drawn with `model.seed`.
    Fresh,
    /// A parameter file (.npz, layout from `model.kind`).
    Params(PathBuf),
    /// A run folder's latest weights (its config is the job's, with any overrides).
    Run(RunDir),
}

/// A simulation as asked for (the config already loaded and overridden).
#[derive(Clone, Debug)]
pub struct SimulateJob {
    pub config: Config,
    pub source: NetworkSource,
    pub settings: SimulationSettings,
    /// The folder name (`simulate-NAME`); default from the source, made unique.
    pub name: Option<String>,
    /// The command line, recorded in simulate.json.
    pub command: String,
}

/// The network to simulate, its learned feedback, where it came from, and the default name.
struct Simulated<M = RateNetwork> {
    net: M,
    feedback: Option<Params>,
    source: String,
    default_name: String,
}

fn simulated_network(job: &SimulateJob, data: &crate::data::Split) -> Result<Simulated> {
    let config = &job.config;
    let batches = data.train.len().div_ceil(config.training.batch_size);
    let fresh = TrainingState::new(config, data.train.n_inputs(), data.train.n_classes, batches)?;
    let (s, field) = match &job.source {
        NetworkSource::Run(run) => {
            let name = run
                .path
                .file_name()
                .map_or_else(|| config.run_name(), |n| n.to_string_lossy().into_owned());
            let t = TrainedRun::load_latest(run.clone(), config.clone(), fresh)?;
            let source = match t.checkpoint_epochs {
                None => format!("{} (finished run)", run.path.join("params.npz").display()),
                Some(epochs) => format!(
                    "{} after epoch {epochs} (unfinished run)",
                    run.path.join("checkpoint.npz").display()
                ),
            };
            let s = Simulated {
                net: t.net,
                feedback: t.feedback,
                source,
                default_name: name,
            };
            (s, "--run")
        }
        NetworkSource::Params(path) => {
            let net = load_params(
                path,
                config.model.kind == ModelKind::Ff,
                config.model.activation,
            )?;
            // The controller's learned weights (lcp-kp, lcp-lf) are the initial ones.
            let s = Simulated {
                net,
                feedback: fresh.feedback,
                source: path.display().to_string(),
                default_name: stem(path, config),
            };
            (s, "--params")
        }
        NetworkSource::Fresh => {
            let s = Simulated {
                net: fresh.net,
                feedback: fresh.feedback,
                source: format!("fresh network (model.seed = {})", config.model.seed),
                default_name: config.run_name(),
            };
            (s, "model")
        }
    };
    let net = &s.net;
    if net.topology() != &config.topology()
        || net.n_x() != data.train.n_inputs()
        || net.n_y() != data.train.n_classes
    {
        return Err(LcsimError::Shape {
            field: field.into(),
            expected: format!(
                "{:?} with {} inputs and {} outputs (model.kind, model.hidden and the data; change them with --set model.hidden=[...])",
                config.topology(),
                data.train.n_inputs(),
                data.train.n_classes
            ),
            found: format!(
                "{:?} with {} inputs and {} outputs",
                net.topology(),
                net.n_x(),
                net.n_y()
            ),
        });
    }
    Ok(s)
}

/// A path's file stem (a run folder's name), for default folder names.
fn stem(p: &Path, config: &Config) -> String {
    p.file_stem()
        .or(p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| config.run_name())
}

/// The folder name and path: the job's name (checked, the folder must not exist) or
/// `default_name` with -2, -3, ... appended until free.
fn folder(job: &SimulateJob, default_name: &str) -> Result<(String, PathBuf)> {
    let config = &job.config;
    Ok(match &job.name {
        Some(name) => {
            validate_name(name)?;
            let dir = simulation_path(config, name);
            ensure_new(&dir)?;
            (name.clone(), dir)
        }
        None => {
            let mut name = default_name.to_string();
            for k in 2.. {
                if !simulation_path(config, &name).exists() {
                    break;
                }
                name = format!("{default_name}-{k}");
            }
            let dir = simulation_path(config, &name);
            (name, dir)
        }
    })
}

/// The inner problem of a meta-learning run to simulate (theta: a run's trained one, a
/// parameter file's `theta`, or drawn from model.seed), where it came from, the default name.
fn simulated_meta_system(job: &SimulateJob) -> Result<(MetaSystem, String, String)> {
    let config = &job.config;
    match &job.source {
        NetworkSource::Run(run) => {
            let name = run
                .path
                .file_name()
                .map_or_else(|| config.run_name(), |n| n.to_string_lossy().into_owned());
            let params = run.path.join("params.npz");
            let source = if params.is_file() {
                format!("{} (finished run)", params.display())
            } else {
                format!(
                    "{} (unfinished run)",
                    run.path.join("checkpoint.npz").display()
                )
            };
            Ok((trained_meta_system(run, config)?, source, name))
        }
        NetworkSource::Params(path) => {
            let mut net = meta_system(config)?;
            let arrays = read_npz(path)?;
            let theta = arrays
                .get("theta")
                .ok_or_else(|| LcsimError::MissingArray {
                    name: "theta".into(),
                    path: path.clone(),
                    required:
                        "theta (the meta-learned initialisation, as in a meta run's params.npz)"
                            .into(),
                })?;
            let n = net.state_dim();
            if theta.data.len() != n {
                return Err(LcsimError::Shape {
                    field: format!("{}: theta", path.display()),
                    expected: format!("{n} values (the learner of model.hidden)"),
                    found: format!("{} values", theta.data.len()),
                });
            }
            net.params_mut().tensor_mut(0).copy_from_slice(&theta.data);
            let stem = path
                .file_stem()
                .map_or_else(|| config.run_name(), |n| n.to_string_lossy().into_owned());
            Ok((net, path.display().to_string(), stem))
        }
        NetworkSource::Fresh => Ok((
            meta_system(config)?,
            format!("theta drawn with model.seed = {}", config.model.seed),
            config.run_name(),
        )),
    }
}

/// [`simulate`] for `model.kind = "meta"`: the inner fine-tuning of the chosen tasks.
fn simulate_meta(job: &SimulateJob, mut say: impl FnMut(String)) -> Result<Written> {
    let (config, settings) = (&job.config, &job.settings);
    let method = config.method.name;
    if !method.is_least_control() {
        return Err(crate::error::invalid(
            "method.name",
            method.name(),
            "a least-control method (lcp-di, lcp-ebd): simulate switches a controller on; a theta trained by imaml, fomaml or rbp is simulated with --set method.name=\"lcp-di\"",
        ));
    }
    let data = load_split(config)?;
    let tasks = settings.split.of(&data);
    settings.validate(tasks.len())?;
    let (net, source, default_name) = simulated_meta_system(job)?;
    settings.check_memory(3 * net.state_dim())?;
    let (name, dir) = folder(job, &default_name)?;
    say(format!(
        "lcsim {} simulate: meta-learning, learner {:?} ({} weights), lambda = {}, {} tasks {:?} of {} ({}), controller ({}) on at t = {} until t = {}, {} points, solver {}",
        env!("CARGO_PKG_VERSION"),
        net.learner().sizes(),
        net.state_dim(),
        net.lambda(),
        settings.split.name(),
        settings.samples,
        tasks.len(),
        tasks.name,
        config.method.name.name(),
        settings.t_on,
        settings.t_end,
        settings.output_times().len(),
        config.solver.integrator().method.name()
    ));
    say(format!("theta: {source}"));
    let msim = simulate_meta_tasks(config, &net, tasks, settings)?;
    let curves = sinusoid_curves(config, settings.split, tasks, &settings.samples);
    let provenance = Provenance {
        name,
        command: job.command.clone(),
        params_source: source,
        settings: settings.clone(),
    };
    let written = write_meta_simulation(&dir, config, &net, &msim, curves.as_deref(), &provenance)?;
    let sim = &msim.sim;
    let (k_on, last) = (sim.switch_index, sim.times.len() - 1);
    for (j, tr) in sim.trajectories.iter().enumerate() {
        let inner = &msim.inner_loss[j];
        say(format!(
            "task {}: free {}, controlled {}; inner loss {:.4} at t = 0 -> {:.4} at t_on -> {:.4} at t_end; query loss {:.4} -> {:.4} -> {:.4}; |psi| at t_end {:.3e}",
            sim.samples[j],
            ended(&tr.free),
            ended(&tr.controlled),
            inner[0],
            inner[k_on],
            inner[last],
            tr.loss[0],
            tr.loss[k_on],
            tr.loss[last],
            tr.psi_norm[last]
        ));
    }
    say(format!("results: {}", written.dir.display()));
    for f in &written.figures {
        say(format!("figure:  {}", f.display()));
    }
    Ok(written)
}

/// How a segment of a trajectory ended, in words.
fn ended(r: &Option<SegmentRecord>) -> String {
    r.as_ref()
        .map_or("not run".to_string(), |r| match r.termination {
            Termination::Converged => "settled".to_string(),
            Termination::MaxTime => {
                format!("still moving at its end (residual {:.1e})", r.residual)
            }
            ref t => format!(
                "{} at t = {:.1} (residual {:.1e})",
                t.name(),
                r.time_reached,
                r.residual
            ),
        })
}

/// Validates the job against the data, simulates and writes the folder; hands each line of
/// the report to `say` as soon as it is known. Library field names (`t_on`) are kept in
/// errors; the command line renames them to its flags.
pub fn simulate(job: &SimulateJob, say: impl FnMut(String)) -> Result<Written> {
    let config = &job.config;
    match config.model.kind {
        ModelKind::Meta => simulate_meta(job, say),
        ModelKind::Conv | ModelKind::Deq => {
            let data = load_split(config)?;
            job.settings.validate(job.settings.split.of(&data).len())?;
            let n_y = data.train.n_classes;
            if config.model.kind == ModelKind::Conv {
                let s = simulated_conv(job, &data, config.conv_net(n_y)?)?;
                simulate_system(job, &data, s, say)
            } else {
                let s = simulated_conv(job, &data, config.conv_deq(n_y)?)?;
                simulate_system(job, &data, s, say)
            }
        }
        ModelKind::Rnn | ModelKind::Ff => {
            let data = load_split(config)?;
            job.settings.validate(job.settings.split.of(&data).len())?;
            let s = simulated_network(job, &data)?;
            simulate_system(job, &data, s, say)
        }
    }
}

/// A conv system (`fresh`: the config's, drawn from model.seed) with the job's weights: a
/// parameter file's (the tensors of `fresh`, by name), a run's latest (checkpoint.npz), or
/// `fresh` itself.
fn simulated_conv<M: Trainable>(
    job: &SimulateJob,
    data: &crate::data::Split,
    fresh: M,
) -> Result<Simulated<M>> {
    let config = &job.config;
    let batches = data.train.len().div_ceil(config.training.batch_size);
    let state = TrainingState::with_system(fresh, config, batches)?;
    match &job.source {
        NetworkSource::Fresh => Ok(Simulated {
            net: state.net,
            feedback: state.feedback,
            source: format!("fresh network (model.seed = {})", config.model.seed),
            default_name: config.run_name(),
        }),
        NetworkSource::Params(path) => {
            let required = format!(
                "the parameters of model.kind = \"{}\" as the config sizes them: {:?}",
                config.run_kind(),
                state.net.params().names().collect::<Vec<_>>()
            );
            let params = load_params_like(path, state.net.params(), &required)?;
            let mut net = state.net;
            *net.params_mut() = params;
            Ok(Simulated {
                net,
                feedback: state.feedback,
                source: path.display().to_string(),
                default_name: stem(path, config),
            })
        }
        NetworkSource::Run(run) => {
            if !run.path.join("checkpoint.npz").is_file() {
                return Err(invalid(
                    "--run",
                    run.path.display(),
                    "a run folder with checkpoint.npz (at least one completed epoch)",
                ));
            }
            let state = run.load_checkpoint(state)?;
            let done = if run.is_finished() {
                "finished run".to_string()
            } else {
                format!("after epoch {}, unfinished run", state.epochs_done())
            };
            Ok(Simulated {
                source: format!("{} ({done})", run.path.join("checkpoint.npz").display()),
                default_name: stem(&run.path, config),
                net: state.net,
                feedback: state.feedback,
            })
        }
    }
}

/// Simulates the chosen samples of `data` on `s.net` and writes the folder.
fn simulate_system<M: EquilibriumSystem>(
    job: &SimulateJob,
    data: &crate::data::Split,
    s: Simulated<M>,
    mut say: impl FnMut(String),
) -> Result<Written> {
    let (config, settings) = (&job.config, &job.settings);
    let dataset = settings.split.of(data);
    settings.check_memory(3 * s.net.state_dim())?;
    let n_h = s.net.state_dim() - s.net.loss_dim();
    settings.drawn_units(n_h)?;
    let (name, dir) = folder(job, &s.default_name)?;
    let system = match config.model.kind {
        ModelKind::Conv | ModelKind::Deq => format!(
            "model.kind = \"{}\" ({} state units, {} parameters)",
            config.run_kind(),
            s.net.state_dim(),
            s.net.params().num_scalars()
        ),
        _ => format!("{:?}", config.topology()),
    };
    say(format!(
        "lcsim {} simulate: {system}, {} samples {:?} of {}, controller on at t = {} until t = {}, {} points, solver {}",
        env!("CARGO_PKG_VERSION"),
        settings.split.name(),
        settings.samples,
        dataset.name,
        settings.t_on,
        settings.t_end,
        settings.output_times().len(),
        config.solver.method.name()
    ));
    say(format!("network: {}", s.source));
    let sim = simulate_dataset_samples(config, &s.net, s.feedback.as_ref(), dataset, settings)?;
    let provenance = Provenance {
        name,
        command: job.command.clone(),
        params_source: s.source,
        settings: settings.clone(),
    };
    let written = write_simulation(&dir, config, &sim, &provenance)?;
    let last = sim.times.len() - 1;
    for ((tr, sample), label) in sim.trajectories.iter().zip(&sim.samples).zip(&sim.labels) {
        say(format!(
            "sample {sample} (label {label}): free {}, controlled {}; loss {:.4} at t_on -> {:.4} at t_end; |psi| at t_end {:.3e}",
            ended(&tr.free),
            ended(&tr.controlled),
            tr.loss[sim.switch_index],
            tr.loss[last],
            tr.psi_norm[last]
        ));
    }
    say(format!("results: {}", written.dir.display()));
    for f in &written.figures {
        say(format!("figure:  {}", f.display()));
    }
    Ok(written)
}
