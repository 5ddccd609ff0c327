//! The flags of the studies (check, equilibrium, simulate, throughput, align, compare) and
//! their translation into the library's validated settings.

use super::{parse_topology, ConfigSource, DynamicsArgs, LossArgs, ModelKind, SolverArgs};
use crate::config::Config;
use crate::control::branch::EquilibriumDefinition;
use crate::error::{invalid, Result};
use crate::numerics::activation::Activation;
use crate::run::RunDir;
use crate::studies::alignment_study::{AlignJob, LEAST_CONTROL};
use crate::studies::batch_study::{BatchMethod, EquilibriumJob};
use crate::studies::check::CheckSettings;
use crate::studies::check_conv::{ConvCheckSettings, ConvModel};
use crate::studies::check_meta::{MetaCheckSettings, DEFAULT_META_ALPHAS};
use crate::studies::compare::CompareJob;
use crate::studies::simulate::{SimulationSettings, SplitChoice};
use crate::studies::simulate_job::{NetworkSource, SimulateJob};
use crate::studies::throughput::ThroughputJob;
use crate::system::rate::Topology;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// The system `lcsim check` checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckSystem {
    /// The rate network (spec 6).
    Rate,
    /// Meta-learning's inner problem (spec 7.1) on a random tanh learner and sinusoid tasks.
    Meta,
    /// A small random layered conv net (conv + max pool, strided conv, dense, readout) on
    /// random 1 x 6 x 6 images.
    Conv,
    /// A small random convolutional DEQ (GroupNorm, --activation) on random 1 x 6 x 6 images.
    Deq,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct CheckArgs {
    /// The system checked. meta: a random tanh learner MLP (--learner-hidden) fine-tuned on
    /// --tasks sinusoid tasks; it reads --seed, --alphas, --alpha (the finite-difference
    /// check's), the gains, time constants and --fd-step, --fd-tolerance, --cosine-tolerance,
    /// --json, and ignores the rate-only flags (--inputs, --hidden, --outputs, --model,
    /// --activation, --batch), the loss flags (the outer loss is the query MSE) and the
    /// solver flags (every solve is Newton-Krylov to 1e-10, refined by Newton's method).
    #[arg(long, value_enum, default_value_t = CheckSystem::Rate)]
    pub system: CheckSystem,
    /// Input dimension n_x of the random network (rate only).
    #[arg(long, default_value_t = 5)]
    pub inputs: usize,
    /// Hidden units n_h (rnn) or comma-separated layer sizes (ff), e.g. 6,4 (rate only).
    #[arg(long, default_value = "8")]
    pub hidden: String,
    /// Output units n_y (rate only).
    #[arg(long, default_value_t = 3)]
    pub outputs: usize,
    /// Connectivity (rate only).
    #[arg(long, value_enum, default_value_t = ModelKind::Rnn)]
    pub model: ModelKind,
    /// Rate nonlinearity (rate only).
    #[arg(long, value_enum, default_value_t = Activation::Tanh)]
    pub activation: Activation,
    /// Samples in the random batch (rate only).
    #[arg(long, default_value_t = 3)]
    pub batch: usize,
    /// Hidden layer sizes of the learner, comma-separated (meta only; input and output 1).
    #[arg(long, default_value = "5,4")]
    pub learner_hidden: String,
    /// Sinusoid tasks in the batch (meta only).
    #[arg(long, default_value_t = 2)]
    pub tasks: usize,
    /// Support points K per task (meta only).
    #[arg(long, default_value_t = 4)]
    pub support: usize,
    /// Query points Q per task (meta only).
    #[arg(long, default_value_t = 6)]
    pub query: usize,
    /// Pull lambda of the fine-tuned weights towards theta (meta only; > 0).
    #[arg(long, default_value_t = 2.0)]
    pub lambda: f64,
    /// Seed of the network and the data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Alphas of the alignment check (comma-separated, increasing). Default:
    /// 0.01,0.1,1,10,100,1000 (rate), 0.1,1,10,100,1000 (meta).
    #[arg(long, value_delimiter = ',')]
    pub alphas: Option<Vec<f64>>,
    /// Central finite-difference step (relative to max(|theta|, 1)). Default: 1e-5; 1e-6 for
    /// deq (its GroupNorms make H_alpha sharply curved in the small K1, K2 entries).
    #[arg(long)]
    pub fd_step: Option<f64>,
    /// Largest accepted relative error of the finite-difference checks.
    #[arg(long, default_value_t = 1e-6)]
    pub fd_tolerance: f64,
    /// Smallest accepted cosine(LCP update, -RBP gradient) at the largest alpha.
    #[arg(long, default_value_t = 0.999)]
    pub cosine_tolerance: f64,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dynamics: DynamicsArgs,
    #[command(flatten)]
    pub solver: SolverArgs,
    #[command(flatten)]
    pub loss: LossArgs,
}

impl CheckArgs {
    /// The topology from --model and --hidden.
    pub fn topology(&self) -> Result<Topology> {
        parse_topology(self.model, &self.hidden)
    }

    /// The validated settings of `lcsim check`.
    pub fn settings(&self) -> Result<CheckSettings> {
        let s = CheckSettings {
            n_x: self.inputs,
            topology: self.topology()?,
            n_y: self.outputs,
            batch: self.batch,
            seed: self.seed,
            activation: self.activation,
            loss: self.loss.loss,
            loss_scale: self.loss.loss_scale,
            tau_v: self.dynamics.tau_v,
            controller: self.dynamics.controller()?,
            alphas: self
                .alphas
                .clone()
                .unwrap_or_else(|| CheckSettings::default().alphas),
            fd_step: self.fd_step.unwrap_or(1e-5),
            solver: self.solver.options()?,
            fd_tolerance: self.fd_tolerance,
            cosine_tolerance: self.cosine_tolerance,
        };
        s.validate().map_err(rename_meta_field)?;
        Ok(s)
    }

    /// The validated settings of `lcsim check --system conv|deq`: the default small system
    /// with the flags of the rate check (--outputs, --batch, --seed, --activation (conv),
    /// loss, dynamics, solver, alphas, FD step and tolerances; not --inputs, --hidden, --model).
    pub fn conv_settings(&self) -> Result<ConvCheckSettings> {
        let mut check = self.settings()?;
        let model = match self.system {
            CheckSystem::Deq => {
                check.fd_step = self.fd_step.unwrap_or(1e-6);
                ConvModel::small_deq()
            }
            _ => ConvModel::small_layered(),
        };
        Ok(ConvCheckSettings::new(model, check))
    }

    /// The validated settings of `lcsim check --system meta`.
    pub fn meta_settings(&self) -> Result<MetaCheckSettings> {
        let mut learner = vec![1];
        for part in self.learner_hidden.split(',').map(str::trim) {
            let size = part
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    invalid(
                        "--learner-hidden",
                        format!("`{}`", self.learner_hidden),
                        "comma-separated layer sizes >= 1, e.g. 5,4",
                    )
                })?;
            learner.push(size);
        }
        learner.push(1);
        let s = MetaCheckSettings {
            learner,
            tasks: self.tasks,
            support: self.support,
            query: self.query,
            lambda: self.lambda,
            seed: self.seed,
            tau: self.dynamics.tau_v,
            controller: self.dynamics.controller()?,
            alphas: self
                .alphas
                .clone()
                .unwrap_or_else(|| DEFAULT_META_ALPHAS.to_vec()),
            fd_step: self.fd_step.unwrap_or(1e-5),
            fd_tolerance: self.fd_tolerance,
            cosine_tolerance: self.cosine_tolerance,
            ..MetaCheckSettings::default()
        };
        s.validate().map_err(rename_meta_field)?;
        Ok(s)
    }
}

/// Library field names of the meta check's settings (`fd_step`) become flag names
/// (`--fd-step`).
fn rename_meta_field(e: crate::error::LcsimError) -> crate::error::LcsimError {
    match e {
        crate::error::LcsimError::InvalidValue {
            field,
            value,
            allowed,
        } if [
            "tasks",
            "support",
            "query",
            "alphas",
            "fd_step",
            "fd_tolerance",
            "meta.lambda",
        ]
        .contains(&field.as_str()) =>
        {
            crate::error::LcsimError::InvalidValue {
                field: format!("--{}", field.trim_start_matches("meta.").replace('_', "-")),
                value,
                allowed,
            }
        }
        other => other,
    }
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct EquilibriumArgs {
    /// Parameters (.npz with W, b, E, c, D, d; rows = postsynaptic).
    #[arg(long)]
    pub params: PathBuf,
    /// Inputs (.npy, one sample per row: (B, n_x)).
    #[arg(long)]
    pub input: PathBuf,
    /// Labels (.npy: (B,) integer classes, or (B, n_y) targets).
    #[arg(long)]
    pub labels: PathBuf,
    /// Output file (.npz), written atomically.
    #[arg(long)]
    pub out: PathBuf,
    /// Layout of the parameter file: rnn (full W) or ff (layer blocks).
    #[arg(long, value_enum, default_value_t = ModelKind::Rnn)]
    pub model: ModelKind,
    /// Rate nonlinearity.
    #[arg(long, value_enum, default_value_t = Activation::Tanh)]
    pub activation: Activation,
    /// What to compute.
    #[arg(long, value_enum, default_value_t = BatchMethod::LcpDi)]
    pub method: BatchMethod,
    /// Which controlled equilibrium (spec 2.2): where the flow from phi0 settles, or the
    /// branch continued from phi0 in the control strength (a fold is reported per sample).
    #[arg(long, value_enum, default_value_t = EquilibriumDefinition::Flow)]
    pub equilibrium: EquilibriumDefinition,
    #[command(flatten)]
    pub dynamics: DynamicsArgs,
    #[command(flatten)]
    pub solver: SolverArgs,
    #[command(flatten)]
    pub loss: LossArgs,
}

impl EquilibriumArgs {
    /// The job of `lcsim equilibrium` (controller and solver validated; files read later).
    pub fn job(&self) -> Result<EquilibriumJob> {
        Ok(EquilibriumJob {
            controller: self.dynamics.controller()?,
            solver: self.solver.options()?,
            params: self.params.clone(),
            input: self.input.clone(),
            labels: self.labels.clone(),
            out: self.out.clone(),
            layered: self.model == ModelKind::Ff,
            activation: self.activation,
            method: self.method,
            equilibrium: self.equilibrium,
            loss: self.loss.loss,
            loss_scale: self.loss.loss_scale,
            tau_v: self.dynamics.tau_v,
        })
    }
}

#[derive(Args, Debug)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// Mini-batches timed per thread count (the first ones of epoch 1, from the initial weights).
    #[arg(long, default_value_t = 20)]
    pub batches: usize,
    /// Thread counts to time (0 = all cores).
    #[arg(long, value_delimiter = ',', default_value = "1,0")]
    pub threads: Vec<usize>,
    /// Print one JSON object (the whole report) instead of lines.
    #[arg(long)]
    pub json: bool,
}

impl ThroughputArgs {
    /// The job of `lcsim throughput` (the config loaded; --batches checked by the library).
    pub fn job(&self) -> Result<ThroughputJob> {
        Ok(ThroughputJob {
            config: self.source.load()?,
            batches: self.batches,
            threads: self.threads.clone(),
        })
    }
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// Network parameters (.npz with W, b, E, c, D, d; rows = postsynaptic; layout from
    /// model.kind; for model.kind = "meta": theta, as in a meta run's params.npz). Default: a
    /// fresh network (theta) drawn with model.seed.
    #[arg(long, value_name = "P.npz", conflicts_with = "run")]
    pub params: Option<PathBuf>,
    /// A folder made by `lcsim train`: simulate with its config.toml (plus any --set) and its
    /// trained weights (params.npz, or checkpoint.npz while the run is unfinished).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    pub run: Option<PathBuf>,
    /// Comma-separated indices of the samples in the split, e.g. 0,1,2 (tasks for a
    /// meta-learning run: test = meta-test tasks, train = the meta-training pool).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub samples: Vec<usize>,
    /// The split the samples come from.
    #[arg(long, value_enum, default_value_t = SplitChoice::Test)]
    pub split: SplitChoice,
    /// Time the controller switches on, in time units of dynamics.tau_v (>= 0).
    #[arg(long, default_value_t = SimulationSettings::default().t_on)]
    pub t_on: f64,
    /// End of the simulation, in time units of dynamics.tau_v (> --t-on).
    #[arg(long, default_value_t = SimulationSettings::default().t_end)]
    pub t_end: f64,
    /// Output times: this many points evenly spaced on [0, t_end], plus t_on when it falls
    /// between them (>= 2).
    #[arg(long, default_value_t = SimulationSettings::default().points)]
    pub points: usize,
    /// Hidden units drawn in the figures: the first k (>= 1; all are saved).
    #[arg(long, value_name = "K", default_value_t = SimulationSettings::default().hidden_units)]
    pub hidden_units: usize,
    /// Hidden units drawn in the figures, by index, instead of the first K (comma-separated;
    /// for model.kind conv/deq the feature-map entry `(c h + y) w + x`, layer after layer).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub units: Vec<usize>,
    /// Folder name: results go to <output.dir>/simulate-NAME, which must not exist yet.
    /// Default: the run folder's name (--run), the parameter file's stem (--params) or the
    /// config's run name, with -2, -3, ... appended when taken.
    #[arg(long)]
    pub name: Option<String>,
}

impl SimulateArgs {
    /// The job of `lcsim simulate`: the config (a run's config.toml with any --set, or
    /// --config) and the source of the weights; the settings are validated against the data.
    pub fn job(&self) -> Result<SimulateJob> {
        let (config, source) = match (&self.run, &self.params) {
            (Some(dir), _) => {
                let (run, _) = RunDir::open(dir)?;
                let config = Config::load(Some(&dir.join("config.toml")), &self.source.overrides)?;
                (config, NetworkSource::Run(run))
            }
            (None, Some(path)) => (self.source.load()?, NetworkSource::Params(path.clone())),
            (None, None) => (self.source.load()?, NetworkSource::Fresh),
        };
        Ok(SimulateJob {
            config,
            source,
            settings: self.settings(),
            name: self.name.clone(),
            command: super::command_line(),
        })
    }

    /// The settings (validated later against the split).
    pub fn settings(&self) -> SimulationSettings {
        SimulationSettings {
            split: self.split,
            samples: self.samples.clone(),
            t_on: self.t_on,
            t_end: self.t_end,
            points: self.points,
            hidden_units: self.hidden_units,
            units: self.units.clone(),
        }
    }
}

/// Library field names of the simulation settings (`t_on`) become flag names (`--t-on`).
pub fn rename_simulate_field(e: crate::error::LcsimError) -> crate::error::LcsimError {
    match e {
        crate::error::LcsimError::InvalidValue {
            field,
            value,
            allowed,
        } if [
            "samples",
            "t_on",
            "t_end",
            "points",
            "hidden_units",
            "units",
            "name",
        ]
        .contains(&field.as_str()) =>
        {
            crate::error::LcsimError::InvalidValue {
                field: format!("--{}", field.replace('_', "-")),
                value,
                allowed,
            }
        }
        crate::error::LcsimError::Resources {
            task,
            estimate,
            limit,
            what,
            keys: _,
        } if task == "the simulation" => crate::error::LcsimError::Resources {
            task,
            estimate,
            limit,
            what,
            keys: "--points, --samples".into(),
        },
        other => other,
    }
}

/// The alphas of `lcsim align` by default: every half decade from 1e-3 to 1e3.
pub const DEFAULT_ALPHAS: &str = "0.001,0.00316,0.01,0.0316,0.1,0.316,1,3.16,10,31.6,100,316,1000";

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct AlignArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// A finished training run of a least-control method (repeatable, one per variant): its
    /// params.npz (and feedback.npz for lcp-kp / lcp-lf) are measured as "trained". The
    /// study's own config (--config) sets the data, controller gains, solver and loss.
    #[arg(long = "run", value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Controller leaks alpha (comma-separated, each > 0; beta = k_i / alpha + k_p).
    #[arg(long, default_value = DEFAULT_ALPHAS)]
    pub alphas: String,
    /// Variants measured on the untrained network (comma-separated; "none" for trained runs
    /// only).
    #[arg(long, default_value = "lcp-di,lcp-kp,lcp-lf,lcp-ebd")]
    pub variants: String,
    /// The batch: the first N samples of --split.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub samples: usize,
    /// The split the batch comes from.
    #[arg(long, value_enum, default_value_t = SplitChoice::Test)]
    pub split: SplitChoice,
    /// Output folder (created if needed; its alignment.* files are replaced). Default:
    /// <output.dir>/alignment-alpha.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Figure format (default: output.figure_format).
    #[arg(long, value_enum)]
    pub format: Option<crate::plot::FigureFormat>,
    /// Figure title (default: data, network and batch).
    #[arg(long)]
    pub title: Option<String>,
}

impl AlignArgs {
    /// The job of `lcsim align` (config loaded, alphas and variants validated; the runs and
    /// --samples are checked by the library before any work).
    pub fn job(&self) -> Result<AlignJob> {
        Ok(AlignJob {
            config: self.source.load()?,
            alphas: self.alphas()?,
            variants: self.variants()?,
            runs: self.runs.clone(),
            samples: self.samples,
            split: self.split,
            out: self.out.clone(),
            format: self.format,
            title: self.title.clone(),
            command: super::command_line(),
        })
    }

    /// The validated alphas, increasing.
    pub fn alphas(&self) -> Result<Vec<f64>> {
        parse_alphas(&self.alphas)
    }

    /// The validated variants of the untrained network (distinct, least-control).
    pub fn variants(&self) -> Result<Vec<crate::config::Method>> {
        use crate::config::Method;
        let allowed = format!("comma-separated distinct names among {LEAST_CONTROL}, or none");
        if self.variants.trim() == "none" {
            return Ok(Vec::new());
        }
        let mut out: Vec<Method> = Vec::new();
        for part in self.variants.split(',').map(str::trim) {
            let m = <Method as ValueEnum>::from_str(part, false)
                .ok()
                .filter(|m| m.is_least_control() && !out.contains(m))
                .ok_or_else(|| invalid("--variants", format!("`{part}`"), &allowed))?;
            out.push(m);
        }
        Ok(out)
    }
}

/// The controller leaks of `--alphas` (comma-separated, each > 0), increasing.
pub fn parse_alphas(text: &str) -> Result<Vec<f64>> {
    let mut values = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let v: f64 = part.parse().map_err(|_| {
            invalid(
                "--alphas",
                format!("`{part}` in `{text}`"),
                "comma-separated numbers > 0, e.g. 0.001,0.1,10,1000",
            )
        })?;
        values.push(v);
    }
    crate::studies::alignment::validate_alphas("--alphas", &values)
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct AgreeArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// A run of a least-control method (repeatable): its weights are measured. The study's
    /// own config (--config, --set) sets the data, loss, controller gains and the solver.
    #[arg(long = "run", value_name = "RUN_DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// Controller leaks alpha (comma-separated, each > 0). Default: controller.alpha.
    #[arg(long)]
    pub alphas: Option<String>,
    /// The definitions measured: flow, branch, or both (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "flow,branch")]
    pub definitions: Vec<crate::control::branch::EquilibriumDefinition>,
    /// The batch: the first N samples of --split.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub samples: usize,
    /// The split the batch comes from.
    #[arg(long, value_enum, default_value_t = SplitChoice::Test)]
    pub split: SplitChoice,
    /// Largest relative distance max_i |z_i - zref_i| / (1 + |zref_i|) of an agreeing
    /// sample (> 0). Default: solver.certify_tolerance.
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Output folder of agreement.csv and agreement.json (created if needed). Default:
    /// <output.dir>/agreement.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl AgreeArgs {
    /// The job of `lcsim agree` (config loaded, alphas validated).
    pub fn job(&self) -> Result<crate::studies::agreement::AgreementJob> {
        let mut definitions = self.definitions.clone();
        definitions.dedup();
        Ok(crate::studies::agreement::AgreementJob {
            config: self.source.load()?,
            runs: self.runs.clone(),
            alphas: match &self.alphas {
                Some(text) => parse_alphas(text)?,
                None => Vec::new(),
            },
            definitions,
            samples: self.samples,
            split: self.split,
            tolerance: self.tolerance,
            out: self.out.clone(),
            command: super::command_line(),
        })
    }
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run folders made by `lcsim train` (each with config.toml and metrics.csv), one panel
    /// each, in this order.
    #[arg(value_name = "RUN_DIR", required = true, num_args = 1..=16)]
    pub run_dirs: Vec<PathBuf>,
    /// Output folder (created if needed; its files are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Figure format.
    #[arg(long, value_enum, default_value_t = crate::plot::FigureFormat::Png)]
    pub format: crate::plot::FigureFormat,
    /// Figure title (default: the data source of the first run).
    #[arg(long)]
    pub title: Option<String>,
}

impl CompareArgs {
    /// The job of `lcsim compare`.
    pub fn job(&self) -> CompareJob {
        CompareJob {
            run_dirs: self.run_dirs.clone(),
            out: self.out.clone(),
            format: self.format,
            title: self.title.clone(),
            command: super::command_line(),
        }
    }
}
