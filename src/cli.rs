//! Raw command-line flags (clap) and their translation into validated library settings.

use clap::{Args, Parser, Subcommand, ValueEnum};
use lcsim::control::{ControllerSettings, LossScale};
use lcsim::error::{invalid, Result};
use lcsim::numerics::activation::Activation;
use lcsim::solve::{AdaptiveSettings, EulerSettings, SolverMethod, SolverSettings, StopCriterion};
use lcsim::studies::simulate::{SimulationSettings, SplitChoice};
use lcsim::system::loss::Loss;
use lcsim::system::rate::Topology;
use std::path::PathBuf;

/// lcsim: learning at equilibrium by the least-control principle, as coupled ODEs.
#[derive(Parser, Debug)]
#[command(name = "lcsim", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a network on a dataset (digits by default) with a least-control method (LCP-DI,
    /// -KP, -LF, -EBD) or a gradient baseline (RBP, BP);
    /// writes a run folder with config, metrics, checkpoints, parameters and figures.
    Train(TrainArgs),
    /// Print the config (the documented default, or a file with its overrides applied).
    Config(ConfigArgs),
    /// Re-render every figure of a run folder from its saved metrics.
    Plot(PlotArgs),
    /// Verify an installation or a setting: the LCP-DI update against finite differences of
    /// H_alpha, the RBP gradient against finite differences of L(phi0), the alignment of
    /// the two as alpha grows (spec 6), and the variants: LCP-EBD and LCP-KP with B = W^T,
    /// G = D^T against LCP-DI (spec 3.2, 3.4). Exits non-zero when a check fails.
    Check(CheckArgs),
    /// Free and controlled equilibria, LCP updates and RBP gradients for one batch of
    /// saved parameters and data; writes them to an .npz file.
    Equilibrium(EquilibriumArgs),
    /// Time course of chosen samples: the free relaxation from rest until --t-on, then the
    /// LCP-DI controller switched on at the state reached, until --t-end. Writes
    /// <output.dir>/simulate-NAME with the arrays (.npy), a table (trajectories.csv),
    /// simulate.json and one figure per sample.
    Simulate(SimulateArgs),
    /// Training throughput (samples/s over the first mini-batches, per thread count), the
    /// GFLOP/s of the batched controlled residual and this machine's dgemm peak.
    Throughput(ThroughputArgs),
    /// Alignment study: for each least-control variant (DI, KP, LF, EBD) and each controller
    /// leak alpha, the cosine between its update and the negative RBP gradient and the norm
    /// ratio |update| / (beta |gradient|), on a fixed batch, for the config's untrained
    /// network (and initial feedback weights) and for trained runs (--run). Writes
    /// alignment.csv, alignment.json and a figure to --out.
    Align(AlignArgs),
    /// The least-control principle across runs: mean control magnitude H and test loss over
    /// training, one panel per run folder, drawn from each run's metrics.csv. Writes
    /// h_and_test_loss.png (or .svg), h_and_test_loss.csv and compare.json to --out.
    Compare(CompareArgs),
    /// Parameter sweeps: plan runs over a grid and/or random samples of config keys, run
    /// them locally in parallel (resumable) or as a Slurm job array, collect the results.
    #[command(subcommand)]
    Sweep(SweepCommand),
}

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
        lcsim::error::ensure_positive("tau_v", self.tau_v)?;
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
    /// The validated solver settings.
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
fn rename_solver_field(e: lcsim::error::LcsimError) -> lcsim::error::LcsimError {
    match e {
        lcsim::error::LcsimError::InvalidValue {
            field,
            value,
            allowed,
        } => lcsim::error::LcsimError::InvalidValue {
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

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct CheckArgs {
    /// Input dimension n_x of the random network.
    #[arg(long, default_value_t = 5)]
    pub inputs: usize,
    /// Hidden units n_h (rnn) or comma-separated layer sizes (ff), e.g. 6,4.
    #[arg(long, default_value = "8")]
    pub hidden: String,
    /// Output units n_y.
    #[arg(long, default_value_t = 3)]
    pub outputs: usize,
    /// Connectivity.
    #[arg(long, value_enum, default_value_t = ModelKind::Rnn)]
    pub model: ModelKind,
    /// Rate nonlinearity.
    #[arg(long, value_enum, default_value_t = Activation::Tanh)]
    pub activation: Activation,
    /// Samples in the random batch.
    #[arg(long, default_value_t = 3)]
    pub batch: usize,
    /// Seed of the network and the data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Alphas of the alignment check (comma-separated, increasing).
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,10,100,1000")]
    pub alphas: Vec<f64>,
    /// Central finite-difference step (relative to max(|theta|, 1)).
    #[arg(long, default_value_t = 1e-5)]
    pub fd_step: f64,
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

/// What `lcsim equilibrium` computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EquilibriumMethod {
    /// Free and LCP-DI controlled equilibria, LCP updates and RBP gradients.
    LcpDi,
    /// The free equilibrium only.
    Free,
    /// The free equilibrium and the RBP gradient.
    Rbp,
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
    #[arg(long, value_enum, default_value_t = EquilibriumMethod::LcpDi)]
    pub method: EquilibriumMethod,
    #[command(flatten)]
    pub dynamics: DynamicsArgs,
    #[command(flatten)]
    pub solver: SolverArgs,
    #[command(flatten)]
    pub loss: LossArgs,
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

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// Continue the unfinished run in this folder from its last completed epoch.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "overrides"])]
    pub resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
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
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub source: ConfigSource,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A run folder made by `lcsim train`.
    pub run_dir: PathBuf,
    /// Figure format (default: the run's output.figure_format).
    #[arg(long, value_enum)]
    pub format: Option<lcsim::plot::FigureFormat>,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// Network parameters (.npz with W, b, E, c, D, d; rows = postsynaptic; layout from
    /// model.kind). Default: a fresh network drawn with model.seed.
    #[arg(long, value_name = "P.npz", conflicts_with = "run")]
    pub params: Option<PathBuf>,
    /// A folder made by `lcsim train`: simulate with its config.toml (plus any --set) and its
    /// trained weights (params.npz, or checkpoint.npz while the run is unfinished).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    pub run: Option<PathBuf>,
    /// Comma-separated indices of the samples in the split, e.g. 0,1,2.
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
    /// Folder name: results go to <output.dir>/simulate-NAME, which must not exist yet.
    /// Default: the run folder's name (--run), the parameter file's stem (--params) or the
    /// config's run name, with -2, -3, ... appended when taken.
    #[arg(long)]
    pub name: Option<String>,
}

impl SimulateArgs {
    /// The settings (validated later against the split).
    pub fn settings(&self) -> SimulationSettings {
        SimulationSettings {
            split: self.split,
            samples: self.samples.clone(),
            t_on: self.t_on,
            t_end: self.t_end,
            points: self.points,
            hidden_units: self.hidden_units,
        }
    }
}

/// Library field names of the simulation settings (`t_on`) become flag names (`--t-on`).
pub fn rename_simulate_field(e: lcsim::error::LcsimError) -> lcsim::error::LcsimError {
    match e {
        lcsim::error::LcsimError::InvalidValue {
            field,
            value,
            allowed,
        } if ["samples", "t_on", "t_end", "points", "hidden_units", "name"]
            .contains(&field.as_str()) =>
        {
            lcsim::error::LcsimError::InvalidValue {
                field: format!("--{}", field.replace('_', "-")),
                value,
                allowed,
            }
        }
        other => other,
    }
}

/// `lcsim sweep ...`
#[derive(Subcommand, Debug)]
pub enum SweepCommand {
    /// Write a sweep folder: manifest.json (one row per run: index, id, overrides, seeds),
    /// base.toml and one resolved config per run. Every run is validated first.
    Plan(SweepPlanArgs),
    /// Run the runs not done yet: all of them in parallel (--jobs), or one (--index, or
    /// SLURM_ARRAY_TASK_ID when neither --index nor --jobs is given). Done runs are skipped,
    /// interrupted ones resumed, failed ones retried.
    Run(SweepRunArgs),
    /// Write a Slurm job-array script over the runs not done yet (DIR/slurm/sweep.sbatch);
    /// with --submit, submit it with sbatch and print the job id.
    Slurm(SweepSlurmArgs),
    /// One table of all runs (DIR/results.csv: status, overrides, final metrics) and figures
    /// (DIR/figures: metric against a parameter, heatmaps over two); lists missing and
    /// failed runs.
    Collect(SweepCollectArgs),
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SweepPlanArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// A grid axis, e.g. controller.alpha=0.01,0.1,1 (repeatable; the cartesian product of
    /// all axes is run, the first axis varying slowest; TOML values, lists in brackets).
    #[arg(long, value_name = "KEY=V1,V2,...")]
    pub grid: Vec<String>,
    /// Random samples per grid point, drawn from the --range keys.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub random: usize,
    /// A range of a random sample, uniform or log-uniform: controller.alpha=0.001:1:log
    /// (repeatable; integer keys are rounded).
    #[arg(long, value_name = "KEY=LO:HI[:log]")]
    pub range: Vec<String>,
    /// Seed of the random samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The sweep folder to write (must not hold a sweep yet).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

impl SweepPlanArgs {
    /// The library settings.
    pub fn settings(&self) -> lcsim::sweep::PlanSettings {
        lcsim::sweep::PlanSettings {
            base: self.source.config.clone(),
            fixed: self.source.overrides.clone(),
            grid: self.grid.clone(),
            random: self.random,
            ranges: self.range.clone(),
            seed: self.seed,
            out: self.out.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct SweepRunArgs {
    /// The sweep folder (made by `lcsim sweep plan`).
    pub dir: PathBuf,
    /// Run only the run with this index (0-based, as in the manifest).
    #[arg(long, conflicts_with = "jobs")]
    pub index: Option<usize>,
    /// Runs at a time (default: the number of CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
}

#[derive(Args, Debug)]
pub struct SweepSlurmArgs {
    /// The sweep folder (made by `lcsim sweep plan`).
    pub dir: PathBuf,
    /// Slurm partition (default: the cluster's default).
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per run, e.g. 30 (minutes), 1:00:00 or 1-00:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per run.
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
    /// At most this many runs at once (the %K of --array).
    #[arg(long, value_name = "K")]
    pub max_parallel: Option<usize>,
    /// Submit the script with sbatch and print the job id.
    #[arg(long)]
    pub submit: bool,
    /// With --submit: wait until every task has ended (sbatch --wait); fails when one failed.
    #[arg(long, requires = "submit")]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct SweepCollectArgs {
    /// The sweep folder (made by `lcsim sweep plan`).
    pub dir: PathBuf,
    /// Result column to draw (repeatable; default: final_test_accuracy and fraction_converged).
    #[arg(long)]
    pub metric: Vec<String>,
    /// The x parameter of the figures (default: the first swept key with several values).
    #[arg(long)]
    pub x: Option<String>,
    /// The y parameter of the heatmaps, one line per value in the line figures (default: the
    /// second swept key).
    #[arg(long)]
    pub y: Option<String>,
    /// Figure format.
    #[arg(long, value_enum, default_value_t = lcsim::plot::FigureFormat::Png)]
    pub format: lcsim::plot::FigureFormat,
    /// Start of the figure titles (default: the sweep folder's name).
    #[arg(long)]
    pub title: Option<String>,
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
    pub format: Option<lcsim::plot::FigureFormat>,
    /// Figure title (default: data, network and batch).
    #[arg(long)]
    pub title: Option<String>,
}

/// The least-control methods by config name.
const LEAST_CONTROL: &str = "lcp-di, lcp-kp, lcp-lf or lcp-ebd";

impl AlignArgs {
    /// The validated alphas, increasing.
    pub fn alphas(&self) -> Result<Vec<f64>> {
        let mut values = Vec::new();
        for part in self
            .alphas
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let v: f64 = part.parse().map_err(|_| {
                invalid(
                    "--alphas",
                    format!("`{part}` in `{}`", self.alphas),
                    "comma-separated numbers > 0, e.g. 0.001,0.1,10,1000",
                )
            })?;
            values.push(v);
        }
        lcsim::studies::alignment::validate_alphas("--alphas", &values)
    }

    /// The validated variants of the untrained network (distinct, least-control).
    pub fn variants(&self) -> Result<Vec<lcsim::config::Method>> {
        use lcsim::config::Method;
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

/// A run of `lcsim align --run` must be of a least-control method.
pub fn least_control_run(
    dir: &std::path::Path,
    method: lcsim::config::Method,
) -> Result<lcsim::config::Method> {
    if method.is_least_control() {
        Ok(method)
    } else {
        Err(invalid(
            "--run",
            format!("{} (method.name = \"{}\")", dir.display(), method.name()),
            &format!("a run of a least-control method: {LEAST_CONTROL}"),
        ))
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
    #[arg(long, value_enum, default_value_t = lcsim::plot::FigureFormat::Png)]
    pub format: lcsim::plot::FigureFormat,
    /// Figure title (default: the data source of the first run).
    #[arg(long)]
    pub title: Option<String>,
}
