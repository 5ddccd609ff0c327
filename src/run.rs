//! Run folders: the resolved config, seeds and version next to metrics, checkpoints,
//! final parameters and figures. Every file is written atomically (temp file + rename);
//! a run counts as finished only once summary.json exists.
//!
//! ```text
//! RUN/config.toml     resolved config          RUN/metrics.csv   one row per epoch
//! RUN/run.json        version, seeds, command  RUN/checkpoint.npz  state after the last epoch
//! RUN/params.npz      final parameters         RUN/summary.json  written last
//! RUN/feedback.npz    final feedback weights (lcp-kp: B, G; lcp-lf: Q)
//! RUN/figures/        learning curves, H, solver statistics
//! ```

use crate::config::{Config, ModelKind};
use crate::data::Split;
use crate::error::{invalid, io_error, LcsimError, Result};
use crate::io::interop::{
    load_feedback, load_params, matrix_from_npy, npy_from_matrix, save_params,
};
use crate::io::metrics::{read_csv, to_csv, EpochMetrics};
use crate::io::npz::{read_npz, write_npz, NpyArray};
use crate::optim::{Optimizer, OptimizerState};
use crate::system::conv_deq::ConvDeq;
use crate::system::conv_net::ConvNet;
use crate::system::meta::MetaSystem;
use crate::system::params::Params;
use crate::system::rate::RateNetwork;
use crate::system::EquilibriumSystem;
use crate::train::meta::MetaTest;
use crate::train::{load_split, Trainable, TrainingState};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced to
/// disk, then renamed over `path` ([`crate::io::atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(crate::io::atomic::write_bytes_atomic(path, bytes)?)
}

/// Writes `value` as pretty-printed JSON to `path` atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON serialises");
    write_atomic(path, text.as_bytes())
}

/// Creates `dir` (and its parents) for results; `flag` names it in errors.
pub fn create_out_dir(flag: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    if !dir.is_dir() {
        return Err(invalid(flag, dir.display(), "a directory"));
    }
    Ok(())
}

/// What summary.json holds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub lcsim_version: String,
    pub run: String,
    pub method: String,
    pub epochs: usize,
    pub final_test_loss: f64,
    pub final_test_accuracy: f64,
    pub final_mean_h: f64,
    pub total_wall_time_s: f64,
    pub figures: Vec<String>,
    /// Meta-learning runs: the meta-test (query loss after fine-tuning on new tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_test: Option<MetaTest>,
}

/// A run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `output.dir/run_name` for a new run and writes config.toml and run.json.
    /// An automatic name (empty `output.name`) gets a suffix -2, -3, ... when taken; an
    /// existing folder with a chosen name is refused (finished: choose another output.name;
    /// unfinished: continue it with --resume).
    pub fn create(config: &Config, command_line: &str) -> Result<RunDir> {
        let io = |path: &Path, source| LcsimError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = &config.output.dir;
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let base = config.run_name();
        let automatic = config.output.name.is_empty();
        // create_dir (not _all) claims the folder, so two runs started at once never share one.
        let mut k = 1;
        let run = loop {
            let name = if k == 1 {
                base.clone()
            } else {
                format!("{base}-{k}")
            };
            let path = dir.join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => break RunDir { path },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && automatic => k += 1,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let run = RunDir { path };
                    let state = if run.is_finished() {
                        "a finished run"
                    } else {
                        "an unfinished run (continue it with `lcsim train --resume DIR`)"
                    };
                    return Err(invalid(
                        "output.name",
                        run.path.display(),
                        &format!("a folder that does not exist yet; it holds {state}; set --set output.name=... or remove it"),
                    ));
                }
                Err(e) => return Err(io(&path, e)),
            }
        };
        write_atomic(&run.path.join("config.toml"), config.to_toml().as_bytes())?;
        let info = serde_json::json!({
            "lcsim_version": env!("CARGO_PKG_VERSION"),
            "command": command_line,
            "model_seed": config.model.seed,
            "training_seed": config.training.seed,
            "data_seed": config.data.seed,
            "started_unix_s": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        });
        write_json(&run.path.join("run.json"), &info)?;
        Ok(run)
    }

    /// Opens an existing run folder and reads its config.toml.
    pub fn open(path: &Path) -> Result<(RunDir, Config)> {
        let config_path = path.join("config.toml");
        if !config_path.is_file() {
            return Err(invalid(
                "RUN_DIR",
                path.display(),
                "a run folder made by `lcsim train` (with config.toml)",
            ));
        }
        let config = Config::load(Some(&config_path), &[])?;
        Ok((
            RunDir {
                path: path.to_path_buf(),
            },
            config,
        ))
    }

    /// True once summary.json exists.
    pub fn is_finished(&self) -> bool {
        self.path.join("summary.json").is_file()
    }

    /// The figures folder (created on demand).
    pub fn figures_dir(&self) -> Result<PathBuf> {
        let dir = self.path.join("figures");
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        Ok(dir)
    }

    /// Records a completed epoch: metrics.csv, then checkpoint.npz (network, optimizer,
    /// epoch). A crash between the two leaves a metrics row that resume discards.
    pub fn save_epoch<S: Trainable>(&self, state: &TrainingState<S>) -> Result<()> {
        write_atomic(
            &self.path.join("metrics.csv"),
            to_csv(&state.history).as_bytes(),
        )?;
        let mut arrays: Vec<(String, NpyArray)> = Vec::new();
        let push = |arrays: &mut Vec<(String, NpyArray)>, prefix: &str, p: &Params| {
            for (name, m) in p.iter() {
                arrays.push((format!("{prefix}{name}"), npy_from_matrix(m, false)));
            }
        };
        push(&mut arrays, "param_", state.net.params());
        let scalar = |v: usize| NpyArray {
            shape: vec![],
            data: vec![v as f64],
        };
        let optimizers = [
            (Some(&state.optimizer), ""),
            (state.feedback_optimizer.as_ref(), "feedback_"),
        ];
        for (opt, prefix) in optimizers {
            let Some(opt) = opt.map(|o| o.state()) else {
                continue;
            };
            if let Some(m) = &opt.first_moment {
                push(&mut arrays, &format!("{prefix}moment1_"), m);
            }
            if let Some(v) = &opt.second_moment {
                push(&mut arrays, &format!("{prefix}moment2_"), v);
            }
            if !prefix.is_empty() {
                arrays.push((format!("{prefix}optimizer_step"), scalar(opt.step)));
            }
        }
        if let Some(fb) = &state.feedback {
            push(&mut arrays, "feedback_", fb);
        }
        let opt = state.optimizer.state();
        arrays.push((
            "epoch".into(),
            NpyArray {
                shape: vec![],
                data: vec![state.epochs_done() as f64],
            },
        ));
        arrays.push((
            "optimizer_step".into(),
            NpyArray {
                shape: vec![],
                data: vec![opt.step as f64],
            },
        ));
        let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
        write_npz(&self.path.join("checkpoint.npz"), &refs)?;
        Ok(())
    }

    /// The state after the last saved epoch (`fresh` gives the layout and settings); without
    /// a checkpoint, `fresh` itself.
    pub fn load_checkpoint<S: Trainable>(
        &self,
        mut fresh: TrainingState<S>,
    ) -> Result<TrainingState<S>> {
        let path = self.path.join("checkpoint.npz");
        if !path.is_file() {
            return Ok(fresh);
        }
        let arrays = read_npz(&path)?;
        let scalar = |name: &str| -> Result<usize> {
            arrays
                .get(name)
                .and_then(|a| a.data.first().copied())
                .map(|v| v as usize)
                .ok_or_else(|| LcsimError::MissingArray {
                    name: name.into(),
                    path: path.clone(),
                    required: "epoch, optimizer_step, param_*".into(),
                })
        };
        let read = |prefix: &str, layout: &Params| -> Result<Option<Params>> {
            if !arrays.contains_key(&format!("{prefix}{}", layout.names().next().unwrap_or(""))) {
                return Ok(None);
            }
            let mut out = layout.clone();
            for (i, name) in layout.names().enumerate() {
                let key = format!("{prefix}{name}");
                let a = arrays.get(&key).ok_or_else(|| LcsimError::MissingArray {
                    name: key.clone(),
                    path: path.clone(),
                    required: "every parameter tensor".into(),
                })?;
                let m = matrix_from_npy(&key, a)?;
                if m.shape() != layout.tensor(i).shape() {
                    return Err(LcsimError::Shape {
                        field: key,
                        expected: format!("{:?}", layout.tensor(i).shape()),
                        found: format!("{:?}", m.shape()),
                    });
                }
                *out.tensor_mut(i) = m;
            }
            Ok(Some(out))
        };
        let layout = fresh.net.params().clone();
        let params = read("param_", &layout)?.ok_or_else(|| LcsimError::MissingArray {
            name: "param_W".into(),
            path: path.clone(),
            required: "param_* tensors".into(),
        })?;
        *fresh.net.params_mut() = params;
        let state = OptimizerState {
            step: scalar("optimizer_step")?,
            first_moment: read("moment1_", &layout)?,
            second_moment: read("moment2_", &layout)?,
        };
        fresh.optimizer = Optimizer::from_state(fresh.optimizer.settings().clone(), state)?;
        if let Some(layout) = fresh.feedback.clone() {
            let names: Vec<&str> = layout.names().collect();
            let feedback = read("feedback_", &layout)?.ok_or_else(|| LcsimError::MissingArray {
                name: format!("feedback_{}", names[0]),
                path: path.clone(),
                required: format!("the controller's feedback weights {names:?}"),
            })?;
            if let Some(opt) = &fresh.feedback_optimizer {
                let state = OptimizerState {
                    step: scalar("feedback_optimizer_step")?,
                    first_moment: read("feedback_moment1_", &layout)?,
                    second_moment: read("feedback_moment2_", &layout)?,
                };
                fresh.feedback_optimizer =
                    Some(Optimizer::from_state(opt.settings().clone(), state)?);
            }
            fresh.feedback = Some(feedback);
        }
        let epoch = scalar("epoch")?;
        let history: Vec<EpochMetrics> = read_csv(&self.path.join("metrics.csv"))?
            .into_iter()
            .filter(|m| m.epoch <= epoch)
            .collect();
        if history.len() != epoch {
            return Err(invalid(
                "metrics.csv",
                format!("{} rows for {epoch} checkpointed epochs", history.len()),
                "one row per completed epoch",
            ));
        }
        fresh.history = history;
        Ok(fresh)
    }

    /// Writes params.npz and, last, summary.json.
    pub fn finish<S: Trainable>(&self, state: &TrainingState<S>, summary: &Summary) -> Result<()> {
        save_params(&self.path.join("params.npz"), &state.net)?;
        if let Some(fb) = &state.feedback {
            let arrays: Vec<(String, NpyArray)> = fb
                .iter()
                .map(|(n, m)| (n.to_string(), npy_from_matrix(m, true)))
                .collect();
            let refs: Vec<(&str, &NpyArray)> =
                arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
            write_npz(&self.path.join("feedback.npz"), &refs)?;
        }
        write_json(&self.path.join("summary.json"), summary)
    }
}

/// How `lcsim train` starts: a new run of a config, or an unfinished run resumed.
#[derive(Clone, Debug)]
pub enum TrainStart {
    New {
        config: Box<Config>,
        /// The command line, recorded in run.json.
        command: String,
    },
    Resume(PathBuf),
}

/// A run ready to train: its folder, config, data and state (the checkpoint's when resumed).
pub struct Training<S: Trainable = RateNetwork> {
    pub run: RunDir,
    pub config: Config,
    pub data: Split,
    pub state: TrainingState<S>,
    /// Mini-batches per epoch.
    pub batches: usize,
}

/// A run ready to train, by its system (`model.kind`).
pub enum StartedTraining {
    /// The rate network (rnn, ff).
    Rate(Training<RateNetwork>),
    /// Meta-learning (meta).
    Meta(Training<MetaSystem>),
    /// The layered conv net (conv).
    Conv(Training<ConvNet>),
    /// The conv DEQ (deq).
    Deq(Training<ConvDeq>),
}

/// Opens or creates the run folder and loads the data and the state to train from; `None`
/// when the run to resume is finished already. The memory estimate is checked and the data
/// loaded before a new folder is created, so bad data or sizes leave no run behind.
pub fn start_training(start: TrainStart) -> Result<Option<StartedTraining>> {
    let (run, config, data) = match start {
        TrainStart::Resume(dir) => {
            let (run, config) = RunDir::open(&dir)?;
            if run.is_finished() {
                return Ok(None);
            }
            config.check_resources()?;
            let data = load_split(&config)?;
            (run, config, data)
        }
        TrainStart::New { config, command } => {
            config.check_resources()?;
            let data = load_split(&config)?;
            (RunDir::create(&config, &command)?, *config, data)
        }
    };
    let batches = data.train.len().div_ceil(config.training.batch_size);
    if config.model.kind == ModelKind::Meta {
        let state = run.load_checkpoint(TrainingState::new_meta(&config, batches)?)?;
        return Ok(Some(StartedTraining::Meta(Training {
            run,
            config,
            data,
            state,
            batches,
        })));
    }
    let n_y = data.train.n_classes;
    match config.model.kind {
        ModelKind::Conv => {
            let fresh = TrainingState::with_system(config.conv_net(n_y)?, &config, batches)?;
            let state = run.load_checkpoint(fresh)?;
            return Ok(Some(StartedTraining::Conv(Training {
                run,
                config,
                data,
                state,
                batches,
            })));
        }
        ModelKind::Deq => {
            let fresh = TrainingState::with_system(config.conv_deq(n_y)?, &config, batches)?;
            let state = run.load_checkpoint(fresh)?;
            return Ok(Some(StartedTraining::Deq(Training {
                run,
                config,
                data,
                state,
                batches,
            })));
        }
        _ => {}
    }
    let fresh = TrainingState::new(
        &config,
        data.train.n_inputs(),
        data.train.n_classes,
        batches,
    )?;
    let state = run.load_checkpoint(fresh)?;
    Ok(Some(StartedTraining::Rate(Training {
        run,
        config,
        data,
        state,
        batches,
    })))
}

/// The trained weights of a run folder, with the config they are used with.
#[derive(Clone, Debug)]
pub struct TrainedRun {
    pub run: RunDir,
    pub config: Config,
    pub net: RateNetwork,
    /// The learned feedback weights (lcp-kp: B, G; lcp-lf: Q), shaped as the method starts them.
    pub feedback: Option<Params>,
    /// Epochs behind the weights when they come from checkpoint.npz (an unfinished run);
    /// `None` for the final weights (params.npz, feedback.npz).
    pub checkpoint_epochs: Option<usize>,
}

impl TrainedRun {
    /// The final weights of a finished run: params.npz (in the layout of `config`) and, for
    /// LCP-KP and LCP-LF, feedback.npz. Errors name the missing file or array.
    pub fn load(run: RunDir, config: Config) -> Result<TrainedRun> {
        if !run.is_finished() {
            return Err(invalid(
                "RUN_DIR",
                run.path.display(),
                "a finished run (summary.json is written when training ends)",
            ));
        }
        let params = run.path.join("params.npz");
        if !params.is_file() {
            return Err(invalid(
                "RUN_DIR",
                params.display(),
                "a finished run folder with params.npz",
            ));
        }
        let net = load_params(
            &params,
            config.model.kind == ModelKind::Ff,
            config.model.activation,
        )?;
        let layout = TrainingState::new(&config, net.n_x(), net.n_y(), 1)?.feedback;
        Self::with_feedback(run, config, net, layout)
    }

    /// The latest weights of a run: the final ones when params.npz exists (finished or not),
    /// else those of checkpoint.npz; `fresh` (the config's initial state for the data) gives
    /// their layout. A run without either is refused.
    pub fn load_latest(run: RunDir, config: Config, fresh: TrainingState) -> Result<TrainedRun> {
        let params = run.path.join("params.npz");
        if params.is_file() {
            let layered = config.model.kind == ModelKind::Ff;
            let net = load_params(&params, layered, config.model.activation)?;
            Self::with_feedback(run, config, net, fresh.feedback)
        } else if run.path.join("checkpoint.npz").is_file() {
            let state = run.load_checkpoint(fresh)?;
            Ok(TrainedRun {
                checkpoint_epochs: Some(state.epochs_done()),
                feedback: state.feedback,
                net: state.net,
                run,
                config,
            })
        } else {
            Err(invalid(
                "--run",
                run.path.display(),
                "a run folder with params.npz or checkpoint.npz (at least one completed epoch)",
            ))
        }
    }

    /// The final weights: `net` and, when the method learns them (`layout`), feedback.npz.
    fn with_feedback(
        run: RunDir,
        config: Config,
        net: RateNetwork,
        layout: Option<Params>,
    ) -> Result<TrainedRun> {
        let feedback = match &layout {
            Some(layout) => Some(load_feedback(&run.path.join("feedback.npz"), layout)?),
            None => None,
        };
        Ok(TrainedRun {
            run,
            config,
            net,
            feedback,
            checkpoint_epochs: None,
        })
    }
}

/// Draws the run's figures from its metrics into RUN/figures and returns their paths
/// relative to the run folder.
pub fn draw_run_figures(
    run: &RunDir,
    rows: &[EpochMetrics],
    format: crate::plot::FigureFormat,
) -> Result<Vec<String>> {
    use crate::plot::{
        control_magnitude, feedback_alignment, learning_curves, solver_statistics, stability,
    };
    let dir = run.figures_dir()?;
    let title = run
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = |name: &str| dir.join(format!("{name}.{}", format.extension()));
    let mut written = Vec::new();
    learning_curves(rows, &title, &path("learning_curves"), format)?;
    written.push(path("learning_curves"));
    if control_magnitude(rows, &title, &path("control_magnitude"), format)? {
        written.push(path("control_magnitude"));
    }
    solver_statistics(rows, &title, &path("solver_statistics"), format)?;
    written.push(path("solver_statistics"));
    if feedback_alignment(rows, &title, &path("feedback_alignment"), format)? {
        written.push(path("feedback_alignment"));
    }
    if stability(rows, &title, &path("stability"), format)? {
        written.push(path("stability"));
    }
    Ok(written
        .iter()
        .map(|p| p.strip_prefix(&run.path).unwrap_or(p).display().to_string())
        .collect())
}

/// A finished run: its summary and, when the figures could not be drawn, why.
#[derive(Debug)]
pub struct FinishedRun {
    pub summary: Summary,
    /// The figures were not drawn (the run is finished all the same; `lcsim plot` retries).
    pub figure_error: Option<LcsimError>,
}

/// Finishes a trained run: draws its figures (when `output.figures`; a figure that cannot be
/// drawn does not keep the run from finishing), writes params.npz, feedback.npz and, last,
/// summary.json (with `meta_test` for a meta-learning run), which marks the run finished.
pub fn finish_run<S: Trainable>(
    run: &RunDir,
    config: &Config,
    state: &TrainingState<S>,
    meta_test: Option<MetaTest>,
) -> Result<FinishedRun> {
    let (figures, figure_error) = if config.output.figures {
        match draw_run_figures(run, &state.history, config.output.figure_format) {
            Ok(f) => (f, None),
            Err(e) => (Vec::new(), Some(e)),
        }
    } else {
        (Vec::new(), None)
    };
    let last = state.history.last().cloned();
    let summary = Summary {
        lcsim_version: env!("CARGO_PKG_VERSION").into(),
        run: run
            .path
            .file_name()
            .map_or_else(|| config.run_name(), |n| n.to_string_lossy().into_owned()),
        method: config.method.name.name().into(),
        epochs: state.epochs_done(),
        final_test_loss: last.as_ref().map_or(f64::NAN, |m| m.test_loss),
        final_test_accuracy: last.as_ref().map_or(f64::NAN, |m| m.test_accuracy),
        final_mean_h: last.as_ref().map_or(f64::NAN, |m| m.mean_h),
        total_wall_time_s: state.history.iter().map(|m| m.wall_time_s).sum(),
        figures,
        meta_test,
    };
    run.finish(state, &summary)?;
    Ok(FinishedRun {
        summary,
        figure_error,
    })
}

/// A meta-learning run's adapted fits (RUN/figures/adapted_fits.EXT, see
/// [`crate::train::meta::adapted_fits_figure`]) for the theta of `net`; returns the path,
/// None for classification tasks (only the sinusoids have curves to draw).
pub fn draw_adapted_fits(
    run: &RunDir,
    config: &Config,
    net: &MetaSystem,
    format: crate::plot::FigureFormat,
) -> Result<Option<PathBuf>> {
    if config.data.source != crate::data::DataSource::Sinusoid {
        return Ok(None);
    }
    let path = run
        .figures_dir()?
        .join(format!("adapted_fits.{}", format.extension()));
    let title = format!(
        "{}: adapted fits of meta-test tasks",
        config.method.name.name()
    );
    let mut config = config.clone();
    config.output.figure_format = format;
    crate::train::meta::adapted_fits_figure(&config, net, &title, &path)?;
    Ok(Some(path))
}

/// The trained theta of a meta-learning run: params.npz when it exists, else the last
/// checkpoint's.
pub fn trained_meta_system(run: &RunDir, config: &Config) -> Result<MetaSystem> {
    let fresh = TrainingState::new_meta(config, 1)?;
    let params = run.path.join("params.npz");
    if params.is_file() {
        let arrays = read_npz(&params)?;
        let theta = arrays
            .get("theta")
            .ok_or_else(|| LcsimError::MissingArray {
                name: "theta".into(),
                path: params.clone(),
                required: "theta (the meta-learned initialisation)".into(),
            })?;
        let n = fresh.net.state_dim();
        if theta.data.len() != n {
            return Err(LcsimError::Shape {
                field: format!("{}: theta", params.display()),
                expected: format!("{n} values (the learner of config.toml)"),
                found: format!("{} values", theta.data.len()),
            });
        }
        let mut net = fresh.net;
        net.params_mut().tensor_mut(0).copy_from_slice(&theta.data);
        return Ok(net);
    }
    Ok(run.load_checkpoint(fresh)?.net)
}
