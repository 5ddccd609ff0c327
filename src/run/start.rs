//! Starting a run (new or resumed) and finishing it: params, summary and figures.

use super::folder::{data_folder_exists, DataIdentity, RunDir};
use super::Summary;
use crate::config::{Config, ModelKind};
use crate::data::Split;
use crate::error::{invalid, LcsimError, Result};
use crate::io::interop::{load_feedback, load_params};
use crate::io::lock::FolderLock;
use crate::io::metrics::EpochMetrics;
use crate::io::npz::read_npz;
use crate::system::conv_deq::ConvDeq;
use crate::system::conv_net::ConvNet;
use crate::system::meta::MetaSystem;
use crate::system::params::Params;
use crate::system::rate::RateNetwork;
use crate::system::EquilibriumSystem;
use crate::train::meta::MetaTest;
use crate::train::{load_split, Trainable, TrainingState};
use std::path::PathBuf;

/// How `lcsim train` starts: a new run of a config, or an unfinished run resumed.
#[derive(Clone, Debug)]
pub enum TrainStart {
    New {
        config: Box<Config>,
        /// The command line, recorded in run.json.
        command: String,
    },
    /// An unfinished run continued; `overrides` (`key=value`) change [`RESUME_KEYS`] only;
    /// `accept_data_change` continues on data other than the run's ([`RunDir::verify_data`]).
    Resume {
        dir: PathBuf,
        overrides: Vec<String>,
        accept_data_change: bool,
    },
}

/// A run ready to train: its folder, config, data and state (the checkpoint's when resumed).
pub struct Training<S: Trainable = RateNetwork> {
    pub run: RunDir,
    /// Held while the run trains: a second `lcsim train` on the folder is refused.
    pub lock: FolderLock,
    pub config: Config,
    pub data: Split,
    pub state: TrainingState<S>,
    /// Mini-batches per epoch.
    pub batches: usize,
}

impl<S: Trainable> Training<S> {
    fn ready(
        run: RunDir,
        lock: FolderLock,
        config: Config,
        data: Split,
        state: TrainingState<S>,
        batches: usize,
    ) -> Self {
        Training {
            run,
            lock,
            config,
            data,
            state,
            batches,
        }
    }
}

/// A run ready to train, by its system (`model.kind`).
pub enum StartedTraining {
    /// The rate network (rnn, ff).
    Rate(Training<RateNetwork>),
    /// Meta-learning (meta).
    Meta(Training<MetaSystem>),
    /// The layered conv net (conv).
    Conv(Box<Training<ConvNet>>),
    /// The conv DEQ (deq).
    Deq(Box<Training<ConvDeq>>),
}

/// Opens or creates the run folder and loads the data and the state to train from; `None`
/// when the run to resume is finished already. The memory estimate is checked and the data
/// loaded before a new folder is created, so bad data or sizes leave no run behind.
pub fn start_training(start: TrainStart) -> Result<Option<StartedTraining>> {
    let (run, lock, config, data) = match start {
        TrainStart::Resume {
            dir,
            overrides,
            accept_data_change,
        } => {
            let (run, config) = RunDir::open(&dir)?;
            let lock = run.lock()?;
            let mut resumed = run.verify_config(config, &overrides)?;
            if resumed.record.is_none() && run.is_finished() {
                return Ok(None);
            }
            resumed.config.check_resources()?;
            data_folder_exists(&resumed.config, &run.path)?;
            let data = load_split(&resumed.config)?;
            run.verify_data(&data, accept_data_change, &mut resumed)?;
            let Some(config) = run.apply_changes(resumed)? else {
                return Ok(None);
            };
            (run, lock, config, data)
        }
        TrainStart::New { config, command } => {
            config.check_resources()?;
            let data = load_split(&config)?;
            let (run, lock) = RunDir::create(&config, &command, Some(&DataIdentity::of(&data)))?;
            (run, lock, *config, data)
        }
    };
    let batches = data.train.len().div_ceil(config.training.batch_size);
    let n_y = data.train.n_classes;
    let started = match config.model.kind {
        ModelKind::Meta => {
            let state = run.load_checkpoint(TrainingState::new_meta(&config, batches)?)?;
            StartedTraining::Meta(Training::ready(run, lock, config, data, state, batches))
        }
        ModelKind::Conv => {
            let fresh = TrainingState::with_system(config.conv_net(n_y)?, &config, batches)?;
            let state = run.load_checkpoint(fresh)?;
            StartedTraining::Conv(Box::new(Training::ready(
                run, lock, config, data, state, batches,
            )))
        }
        ModelKind::Deq => {
            let fresh = TrainingState::with_system(config.conv_deq(n_y)?, &config, batches)?;
            let state = run.load_checkpoint(fresh)?;
            StartedTraining::Deq(Box::new(Training::ready(
                run, lock, config, data, state, batches,
            )))
        }
        ModelKind::Rnn | ModelKind::Ff => {
            let fresh = TrainingState::new(&config, data.train.n_inputs(), n_y, batches)?;
            let state = run.load_checkpoint(fresh)?;
            StartedTraining::Rate(Training::ready(run, lock, config, data, state, batches))
        }
    };
    Ok(Some(started))
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
