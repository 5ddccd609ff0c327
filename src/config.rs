//! The one TOML schema of a run (serde; unknown keys rejected), `--set key=value`
//! overrides, and validation into library settings. `lcsim config` prints the default.

use crate::control::{ControllerSettings, LossScale};
use crate::error::{ensure_non_negative, ensure_positive, invalid, LcsimError, Result};
use crate::numerics::activation::Activation;
use crate::optim::{OptimizerKind, OptimizerSettings, Schedule};
use crate::solve::SteadyStateOptions;
use crate::system::loss::Loss;
use crate::system::rate::Topology;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole run's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub model: ModelConfig,
    pub dynamics: DynamicsConfig,
    pub controller: ControllerConfig,
    pub method: MethodConfig,
    pub solver: SteadyStateOptions,
    pub training: TrainingConfig,
    pub data: DataConfig,
    pub output: OutputConfig,
    /// LCP-KP's settings (only with `method.name = "lcp-kp"`; filled with the defaults there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kp: Option<KpConfig>,
    /// LCP-LF's settings (only with `method.name = "lcp-lf"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lf: Option<LfConfig>,
    /// LCP-EBD's settings (only with `method.name = "lcp-ebd"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ebd: Option<EbdConfig>,
}

/// `[kp]`: Kolen-Pollack feedback (spec 3.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KpConfig {
    /// Multiplicative decay `(1 - weight_decay)` of W, b, D, d, B, G before every batch.
    pub weight_decay: f64,
}

impl Default for KpConfig {
    /// The authors' MNIST setting.
    fn default() -> Self {
        KpConfig { weight_decay: 1e-6 }
    }
}

/// `[lf]`: linear feedback e = Q u with Q learned from noise (spec 3.3).
pub type LfConfig = crate::learn::feedback::NoisyPhase;

pub use crate::learn::energy::EbdConfig;

/// Network connectivity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Recurrent (dense W), reference "rnn".
    Rnn,
    /// Layered feedforward (block-structured W), reference "ff".
    Ff,
}

/// `[model]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// "rnn" or "ff".
    pub kind: ModelKind,
    /// Hidden units: one size for rnn, one size per layer for ff.
    pub hidden: Vec<usize>,
    pub activation: Activation,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: ModelKind::Rnn,
            hidden: vec![64],
            activation: Activation::Tanh,
            seed: 0,
        }
    }
}

/// `[dynamics]`: time constants (time units).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicsConfig {
    pub tau_v: f64,
    pub tau_u: f64,
    pub tau_e: f64,
}

impl Default for DynamicsConfig {
    fn default() -> Self {
        DynamicsConfig {
            tau_v: 1.0,
            tau_u: 1.0,
            tau_e: 1.0,
        }
    }
}

/// `[controller]`: the leaky PI controller (spec 3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    pub alpha: f64,
    pub k_i: f64,
    pub k_p: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            alpha: 0.1,
            k_i: 1.0,
            k_p: 0.0,
        }
    }
}

pub use crate::learn::variant::{ControlledStart, Method};

/// What training does with a sample whose controlled (or adjoint) solve did not converge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum OnUnconverged {
    /// Use the state reached, as the reference does at its iteration cap.
    Use,
    /// Leave the sample out of the update (counted in the metrics).
    Skip,
    /// Stop training with an error.
    Stop,
}

/// `[method]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodConfig {
    pub name: Method,
    pub loss: Loss,
    pub loss_scale: LossScale,
    /// Unconverged but finite solves; diverged (non-finite) ones are always skipped.
    pub on_unconverged: OnUnconverged,
    pub controlled_start: ControlledStart,
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig {
            name: Method::LcpDi,
            loss: Loss::CrossEntropy,
            loss_scale: LossScale::BatchMean,
            on_unconverged: OnUnconverged::Use,
            controlled_start: ControlledStart::Free,
        }
    }
}

/// Learning-rate schedule by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    /// Cosine decay to `min_lr_factor * learning_rate` over all training steps (reference).
    Cosine,
}

/// `[training]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    pub optimizer: OptimizerKind,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Global gradient-norm clipping; 0 = off.
    pub clip_norm: f64,
    pub schedule: ScheduleKind,
    pub min_lr_factor: f64,
    pub epochs: usize,
    pub batch_size: usize,
    /// Evaluate on the test split every this many epochs (and after the last).
    pub eval_every: usize,
    /// Seed of the mini-batch order.
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            optimizer: OptimizerKind::Adam,
            learning_rate: 3e-3,
            weight_decay: 0.0,
            momentum: 0.0,
            clip_norm: 0.0,
            schedule: ScheduleKind::Cosine,
            min_lr_factor: 0.1,
            epochs: 4,
            batch_size: 64,
            eval_every: 1,
            seed: 0,
            threads: 0,
        }
    }
}

impl TrainingConfig {
    /// The optimizer settings for `total_steps` optimizer steps.
    pub fn optimizer_settings(&self, total_steps: usize) -> OptimizerSettings {
        OptimizerSettings {
            kind: self.optimizer,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            clip_norm: (self.clip_norm > 0.0).then_some(self.clip_norm),
            schedule: match self.schedule {
                ScheduleKind::Constant => Schedule::Constant,
                ScheduleKind::Cosine => Schedule::Cosine {
                    total_steps: total_steps.max(1),
                    min_factor: self.min_lr_factor,
                },
            },
            ..OptimizerSettings::default()
        }
    }
}

/// `[data]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub source: crate::data::DataSource,
    /// Directory of the MNIST IDX files (source = "mnist").
    pub mnist_dir: PathBuf,
    /// Test share of the digits and synthetic data.
    pub test_fraction: f64,
    /// Use at most this many training samples; 0 = all.
    pub train_limit: usize,
    /// Use at most this many test samples; 0 = all.
    pub test_limit: usize,
    /// Samples of a synthetic task.
    pub synthetic_samples: usize,
    /// Seed of the train/test split and of synthetic data.
    pub seed: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: crate::data::DataSource::Digits,
            mnist_dir: PathBuf::from("../shared/data/mnist10k"),
            test_fraction: 0.2,
            train_limit: 0,
            test_limit: 0,
            synthetic_samples: 400,
            seed: 0,
        }
    }
}

/// `[output]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Parent directory of run folders.
    pub dir: PathBuf,
    /// Run folder name; empty = method-model-data-seed.
    pub name: String,
    /// Draw figures at the end of the run.
    pub figures: bool,
    pub figure_format: crate::io::figure_format::FigureFormat,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: PathBuf::from("runs"),
            name: String::new(),
            figures: true,
            figure_format: crate::io::figure_format::FigureFormat::Png,
        }
    }
}

impl Config {
    /// Reads a TOML file and applies `key=value` overrides (dotted keys, TOML values;
    /// a value that is not valid TOML is taken as a string).
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Config> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| LcsimError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    invalid(
                        &p.display().to_string(),
                        e.message(),
                        "a TOML file (see `lcsim config`)",
                    )
                })?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let source = path.map_or("--set".to_string(), |p| p.display().to_string());
        // Through text, so that a type error carries a span that names its key.
        let text = toml::to_string(&table).expect("a TOML table serialises");
        let config: Config = toml::from_str(&text).map_err(|e| {
            let key = e.span().map(|s| key_at(&text, s.start)).unwrap_or_default();
            invalid(
                &format!("{source}: {key}"),
                e.message(),
                "keys and types as in `lcsim config`",
            )
        })?;
        let config = config.resolved();
        config.validate()?;
        Ok(config)
    }

    /// The config with the defaults of its method's own section filled in (what a run
    /// records as resolved).
    pub fn resolved(mut self) -> Config {
        match self.method.name {
            Method::LcpKp => self.kp = self.kp.or_else(|| Some(KpConfig::default())),
            Method::LcpLf => self.lf = self.lf.or_else(|| Some(LfConfig::default())),
            Method::LcpEbd => self.ebd = self.ebd.or_else(|| Some(EbdConfig::default())),
            _ => {}
        }
        self
    }

    /// Every key a config may hold: the default with all method sections present.
    pub fn schema_table() -> toml::Table {
        let all = Config {
            kp: Some(KpConfig::default()),
            lf: Some(LfConfig::default()),
            ebd: Some(EbdConfig::default()),
            ..Config::default()
        };
        toml::Table::try_from(all).expect("the config schema serialises")
    }

    /// The default as TOML text, every key preceded by a comment with its meaning,
    /// units and allowed values.
    pub fn default_toml() -> String {
        let plain =
            toml::to_string_pretty(&Config::default()).expect("the default config serialises");
        let mut out = String::from("# lcsim run config: every key, its meaning and default.\n# Override any key on the command line: --set section.key=value\n");
        let mut section = String::new();
        let mut document = |text: &str, comment: &str, out: &mut String| {
            for line in text.lines() {
                if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    section = name.to_string();
                } else if let Some((key, _)) = line.split_once(" = ") {
                    let full = format!("{section}.{key}");
                    if let Some((_, doc)) = KEY_DOCS.iter().find(|(k, _)| *k == full) {
                        out.push_str(&format!("# {doc}\n"));
                    }
                }
                out.push_str(comment);
                out.push_str(line);
                out.push('\n');
            }
        };
        document(&plain, "", &mut out);
        out.push_str(
            "\n# The sections below belong to one method each; give one only with its method.\n",
        );
        for (method, name) in [("lcp-kp", "kp"), ("lcp-lf", "lf"), ("lcp-ebd", "ebd")] {
            let mut one = toml::Table::new();
            one.insert(name.into(), Config::schema_table()[name].clone());
            let text = toml::to_string_pretty(&one).expect("a section serialises");
            out.push_str(&format!("\n# method.name = \"{method}\" only:\n"));
            document(&text, "# ", &mut out);
        }
        out
    }

    /// This config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config serialises")
    }

    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let m = &self.model;
        match (m.kind, m.hidden.len()) {
            (_, 0) => {
                return Err(invalid(
                    "model.hidden",
                    "[]",
                    "one size (rnn) or one size per layer (ff)",
                ))
            }
            (ModelKind::Rnn, n) if n > 1 => {
                return Err(invalid(
                    "model.hidden",
                    format!("{:?}", m.hidden),
                    "one size for kind = \"rnn\"",
                ))
            }
            _ => {}
        }
        if m.hidden.contains(&0) {
            return Err(invalid(
                "model.hidden",
                format!("{:?}", m.hidden),
                "sizes >= 1",
            ));
        }
        ensure_positive("dynamics.tau_v", self.dynamics.tau_v)?;
        self.controller_settings().validate()?;
        match (self.method.name, m.kind) {
            (Method::Bp, ModelKind::Rnn) => {
                return Err(invalid(
                    "method.name",
                    "bp",
                    "\"rbp\" or a least-control method (\"lcp-di\", \"lcp-kp\", \"lcp-lf\", \"lcp-ebd\") for model.kind = \"rnn\" (bp needs a layered net)",
                ))
            }
            (Method::Rbp, ModelKind::Ff) => {
                return Err(invalid(
                    "method.name",
                    "rbp",
                    "\"bp\" or a least-control method (\"lcp-di\", \"lcp-kp\", \"lcp-lf\", \"lcp-ebd\") for model.kind = \"ff\"",
                ))
            }
            _ => {}
        }
        self.solver.validate()?;
        self.validate_method_sections()?;
        let t = &self.training;
        if !(0.0..=1.0).contains(&t.min_lr_factor) {
            return Err(invalid(
                "training.min_lr_factor",
                t.min_lr_factor,
                "a fraction in [0, 1]",
            ));
        }
        if t.threads > 1024 {
            return Err(invalid(
                "training.threads",
                t.threads,
                "an integer in 0..=1024 (0 = all cores)",
            ));
        }
        if t.epochs > 1_000_000 {
            return Err(invalid(
                "training.epochs",
                t.epochs,
                "an integer in 1..=1000000",
            ));
        }
        self.training.optimizer_settings(1).validate()?;
        ensure_non_negative("training.clip_norm", t.clip_norm)?;
        for (key, v) in [
            ("training.epochs", t.epochs),
            ("training.batch_size", t.batch_size),
            ("training.eval_every", t.eval_every),
        ] {
            if v == 0 {
                return Err(invalid(key, 0, "an integer >= 1"));
            }
        }
        let d = &self.data;
        if !(d.test_fraction > 0.0 && d.test_fraction < 1.0) {
            return Err(invalid(
                "data.test_fraction",
                d.test_fraction,
                "a number in (0, 1)",
            ));
        }
        if d.synthetic_samples < 4 {
            return Err(invalid(
                "data.synthetic_samples",
                d.synthetic_samples,
                "an integer >= 4",
            ));
        }
        Ok(())
    }

    /// A method section belongs to its method only, and its values must be valid.
    fn validate_method_sections(&self) -> Result<()> {
        let name = self.method.name;
        let given = [
            ("kp", Method::LcpKp, self.kp.is_some()),
            ("lf", Method::LcpLf, self.lf.is_some()),
            ("ebd", Method::LcpEbd, self.ebd.is_some()),
        ];
        for (section, owner, present) in given {
            if present && name != owner {
                return Err(invalid(
                    &format!("[{section}]"),
                    format!("given with method.name = \"{}\"", name.name()),
                    &format!(
                        "[{section}] only with method.name = \"{}\", which takes it; remove it for \"{}\"",
                        owner.name(),
                        name.name()
                    ),
                ));
            }
        }
        if let Some(kp) = &self.kp {
            let wd = kp.weight_decay;
            if !(0.0..1.0).contains(&wd) {
                return Err(invalid("kp.weight_decay", wd, "a fraction in [0, 1)"));
            }
        }
        if let Some(lf) = &self.lf {
            lf.validate()?;
        }
        if let Some(ebd) = &self.ebd {
            ebd.adam().validate()?;
        }
        Ok(())
    }

    /// The topology of `[model]`.
    pub fn topology(&self) -> Topology {
        match self.model.kind {
            ModelKind::Rnn => Topology::Recurrent {
                hidden: self.model.hidden[0],
            },
            ModelKind::Ff => Topology::Layered {
                layers: self.model.hidden.clone(),
            },
        }
    }

    /// The controller of `[dynamics]` and `[controller]`.
    pub fn controller_settings(&self) -> ControllerSettings {
        ControllerSettings {
            tau_u: self.dynamics.tau_u,
            tau_e: self.dynamics.tau_e,
            alpha: self.controller.alpha,
            k_i: self.controller.k_i,
            k_p: self.controller.k_p,
        }
    }

    /// How the controlled equilibrium of least-control `method` under `controller` is sought
    /// (`method.controlled_start`, `[ebd]`, `[solver]`).
    pub fn variant(
        &self,
        method: Method,
        controller: ControllerSettings,
    ) -> crate::learn::variant::VariantSettings<'_> {
        crate::learn::variant::VariantSettings {
            method,
            controller,
            start: self.method.controlled_start,
            ebd: self.ebd.clone().unwrap_or_default(),
            solver: &self.solver,
        }
    }

    /// The run folder's name: `output.name`, or method-model-data-seed.
    pub fn run_name(&self) -> String {
        if !self.output.name.is_empty() {
            return self.output.name.clone();
        }
        format!(
            "{}-{}-{}-seed{}",
            self.method.name.name(),
            match self.model.kind {
                ModelKind::Rnn => "rnn",
                ModelKind::Ff => "ff",
            },
            self.data.source.name(),
            self.model.seed
        )
    }
}

/// Meaning, units and allowed values of every key (printed by `lcsim config`).
pub const KEY_DOCS: &[(&str, &str)] = &[
    ("model.kind", "\"rnn\" (dense recurrent W) or \"ff\" (layered; W feeds layer k into k+1 only)"),
    ("model.hidden", "hidden units: [n_h] for rnn, one size per layer for ff (reference: [256] / [256, 256])"),
    ("model.activation", "rate nonlinearity s: \"tanh\", \"relu\" or \"sigmoid\""),
    ("model.seed", "seed of the initial weights (PyTorch-style uniform +-1/sqrt(fan_in))"),
    ("dynamics.tau_v", "time constant of the network units v, y (time units; > 0)"),
    ("dynamics.tau_u", "time constant of the integral controller u_i (> 0)"),
    ("dynamics.tau_e", "time constant of the hidden control e (> 0)"),
    ("controller.alpha", "leak of the integral controller (> 0; small = strong control, H -> least control)"),
    ("controller.k_i", "integral gain (>= 0)"),
    ("controller.k_p", "proportional gain (>= 0; reference 0)"),
    ("method.name", "least control: \"lcp-di\" (dynamic inversion), \"lcp-kp\" (learned Kolen-Pollack feedback, [kp]), \"lcp-lf\" (linear feedback e = Q u, [lf]), \"lcp-ebd\" (energy descent, [ebd]); gradients: \"rbp\" (recurrent backprop, rnn) or \"bp\" (backprop, ff)"),
    ("method.loss", "\"cross-entropy\" (softmax of y vs label) or \"squared-error\""),
    ("method.loss_scale", "\"batch-mean\" (controller driven by grad L / B, updates summed; reference) or \"per-sample\" (grad L, updates averaged)"),
    ("method.on_unconverged", "samples whose solve hit max_time/max_steps: \"use\" the state reached (reference), \"skip\" them, or \"stop\"; diverged samples are always skipped"),
    ("method.controlled_start", "start of the controlled relaxation: \"free\" (the free equilibrium, controller at rest) or \"zero\" (all zero, as the reference)"),
    ("solver.method", "\"anderson\" or \"newton-krylov\" (batched equilibrium solvers with stability check and fallback), \"tsit45\", \"bdf\", \"esdirk34\", \"tr-bdf2\" (diffsol, adaptive) or \"euler\" (fixed step dt)"),
    ("solver.dt", "forward-Euler step (time units; dt = 1 with all tau = 1 is the reference iteration)"),
    ("solver.atol", "steady state when every |tau dz/dt|_i <= atol + rtol |z_i| (> 0)"),
    ("solver.rtol", "relative part of the steady-state test (>= 0)"),
    ("solver.max_time", "give up at this time (time units)"),
    ("solver.max_steps", "give up after this many steps"),
    ("solver.ode_rtol", "local relative error tolerance of the adaptive integrators"),
    ("solver.ode_atol", "local absolute error tolerance of the adaptive integrators (keep well below atol)"),
    ("solver.initial_step", "first step of the adaptive integrators (0 = diffsol's heuristic)"),
    ("solver.divergence_bound", "a state entry beyond this magnitude counts as diverged"),
    ("solver.max_iterations", "anderson / newton-krylov: iteration cap before the fallback (>= 1)"),
    ("solver.anderson_step", "anderson: step h of the Euler map z + h r(z) / tau that it accelerates (> 0)"),
    ("solver.anderson_memory", "anderson: previous iterates mixed (>= 1)"),
    ("solver.anderson_damping", "anderson: mixing factor in (0, 1]"),
    ("solver.anderson_regularization", "anderson: relative Tikhonov regularisation of its least squares (>= 0)"),
    ("solver.krylov_dim", "newton-krylov: GMRES dimension per Newton step (>= 1)"),
    ("solver.newton_forcing", "newton-krylov: GMRES stops at |J d + r| <= forcing |r|, in (0, 1)"),
    ("solver.stability_check", "anderson / newton-krylov: reject an equilibrium whose Jacobian has a Ritz value with positive real part (the flow would leave it)"),
    ("solver.stability_dim", "Arnoldi steps (Jacobian products per sample) of the stability check (>= 1)"),
    ("solver.fallback", "anderson / newton-krylov: integrator for the samples they do not settle (\"tsit45\", \"bdf\", \"esdirk34\", \"tr-bdf2\", \"euler\" or \"none\")"),
    ("solver.chunk", "anderson / newton-krylov: samples iterated together (>= 1); results do not depend on the thread count"),
    ("training.optimizer", "\"adam\" (PyTorch Adam, L2 weight decay) or \"sgd\""),
    ("training.learning_rate", "base learning rate (> 0)"),
    ("training.weight_decay", "L2 weight decay added to the gradient (>= 0)"),
    ("training.momentum", "SGD momentum in [0, 1)"),
    ("training.clip_norm", "clip the global update norm to this (0 = off; reference rnn: 10)"),
    ("training.schedule", "\"cosine\" (decay to min_lr_factor * learning_rate over all steps; reference) or \"constant\""),
    ("training.min_lr_factor", "final learning rate of the cosine schedule, as a fraction of learning_rate"),
    ("training.epochs", "passes over the training split (>= 1)"),
    ("training.batch_size", "samples per mini-batch (>= 1; reference 64)"),
    ("training.eval_every", "evaluate on the test split every this many epochs, and after the last"),
    ("training.seed", "seed of the mini-batch order"),
    ("training.threads", "worker threads for the per-sample solves (0 = all cores); results do not depend on it"),
    ("data.source", "\"digits\" (scikit-learn 8x8 digits, embedded), \"mnist\" (IDX files in mnist_dir), \"xor\" or \"two-moons\""),
    ("data.mnist_dir", "directory with train-images-idx3-ubyte(.gz) etc."),
    ("data.test_fraction", "test share of digits and synthetic data, in (0, 1)"),
    ("data.train_limit", "use at most this many training samples (0 = all)"),
    ("data.test_limit", "use at most this many test samples (0 = all)"),
    ("data.synthetic_samples", "samples of a synthetic task"),
    ("data.seed", "seed of the train/test split and synthetic data"),
    ("output.dir", "parent directory of run folders"),
    ("output.name", "run folder name (empty: method-model-data-seedN)"),
    ("output.figures", "draw figures at the end of the run"),
    ("output.figure_format", "\"png\" or \"svg\""),
    ("kp.weight_decay", "lcp-kp: W, b, D, d and the feedback weights B, G shrink by (1 - weight_decay) before every batch, in [0, 1) (reference MNIST: 1e-6)"),
    ("lf.sigma", "lcp-lf: amplitude of the Ornstein-Uhlenbeck noise added to the hidden units' feedback in the noisy phase (> 0; reference 0.01)"),
    ("lf.tau_q", "lcp-lf: time constant of Q; Q moves by dt / tau_q per batch (> 0; reference 1e5)"),
    ("lf.weight_decay", "lcp-lf: decay of Q inside its update (>= 0; reference 0.01)"),
    ("lf.tau_eps", "lcp-lf: time constant of the noise (> 0); its correlation time is timescale_factor * tau_eps"),
    ("lf.timescale_factor", "lcp-lf: T >= 1; in the noisy phase the output units and the controller run T^2 slower than v (reference 5)"),
    ("lf.steps", "lcp-lf: Euler-Maruyama steps of the noisy phase per batch (>= 1; reference 800)"),
    ("lf.dt", "lcp-lf: step of the noisy phase (time units, > 0; reference 1)"),
    ("ebd.descent", "lcp-ebd: \"flow\" (gradient flow on E_alpha solved to steady state by [solver]; use newton-krylov or anderson: the flow is stiff and Euler with dt = 1 diverges) or \"adam\" (Adam on the state, as the reference)"),
    ("ebd.learning_rate", "lcp-ebd, descent = \"adam\": Adam's step on the state (> 0; reference: 0.001 rnn, 0.01 ff)"),
    ("ebd.steps", "lcp-ebd, descent = \"adam\": Adam steps (>= 1; reference: 200 rnn, 800 ff)"),
];

/// The dotted key (`section.key`) of the line holding byte `offset` of a TOML text.
fn key_at(text: &str, offset: usize) -> String {
    let mut section = String::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(['[', ']']).to_string();
        }
        if offset < start + line.len() {
            let key = trimmed.split('=').next().unwrap_or("").trim();
            return if trimmed.starts_with('[') || section.is_empty() {
                section
            } else {
                format!("{section}.{key}")
            };
        }
        start += line.len();
    }
    section
}

/// Applies one `a.b.c=value` override to a TOML table; the key must exist in the schema.
fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| invalid("--set", assignment, "key=value, e.g. controller.alpha=0.05"))?;
    let key = key.trim();
    let defaults = Config::schema_table();
    let parts: Vec<&str> = key.split('.').collect();
    // The key must name a field of the schema.
    let mut known = &defaults;
    for (i, part) in parts.iter().enumerate() {
        match known.get(*part) {
            Some(toml::Value::Table(t)) if i + 1 < parts.len() => known = t,
            Some(toml::Value::Table(t)) => {
                let keys: Vec<&String> = t.keys().collect();
                return Err(invalid(
                    "--set",
                    key,
                    &format!("a key inside the table `{key}`, one of {keys:?}"),
                ));
            }
            Some(_) if i + 1 == parts.len() => {}
            _ => {
                let keys: Vec<&String> = known.keys().collect();
                return Err(invalid(
                    "--set",
                    key,
                    &format!(
                        "a config key; at `{}` the keys are {keys:?}",
                        parts[..i].join(".")
                    ),
                ));
            }
        }
    }
    let value = format!("v = {}", raw.trim())
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let mut node = table;
    for part in &parts[..parts.len() - 1] {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(invalid("--set", key, "a key inside a table")),
        };
    }
    node.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
