//! The training loop (the executor): mini-batches through the plasticity rule or a
//! gradient baseline, an optimizer step, evaluation, and per-epoch metrics handed to an
//! [`Observer`] (which records, checkpoints and shows progress), with the basin and
//! stability diagnostics of a fixed batch ([`diagnostics`]) at the end of every epoch. The
//! loop itself writes nothing.

pub mod diagnostics;
pub mod meta;

use crate::config::{Config, Method, OnNonFinite, OnUnconverged};
use crate::control::{free_equilibrium, CoupledSystem};
use crate::data::{epoch_batches, Dataset, Split};
use crate::error::{invalid, LcsimError, Result};
use crate::io::metrics::{EpochDiagnostics, EpochMetrics, UnconvergedReasons};
use crate::learn::feedback::{
    initial_linear_feedback, kolen_pollack_angles, kolen_pollack_decay, kolen_pollack_descent,
    kolen_pollack_of,
};
use crate::learn::meta_gradient::{first_order_meta_gradient, implicit_meta_gradient, CgReport};
use crate::learn::rbp::{gradient_from_adjoints, rbp_gradient};
use crate::learn::variant::ControlledEquilibrium;
use crate::optim::Optimizer;
use crate::solve::{
    BatchSteadyState, EulerSettings, SolverMethod, SolverSettings, SteadyState, Termination,
};
use crate::system::params::Params;
use crate::system::rate::RateNetwork;
use crate::system::EquilibriumSystem;
use nalgebra::DMatrix;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What the training loop trains: an equilibrium system it can copy (an epoch works on a
/// copy, so an interrupted one is discarded) and send to the solver threads.
pub trait Trainable: EquilibriumSystem + Clone + Send {}
impl<S: EquilibriumSystem + Clone + Send> Trainable for S {}

/// Where training stands: the equilibrium system (the network), the optimizer, the
/// controller's learned feedback and the completed epochs.
#[derive(Clone)]
pub struct TrainingState<S: Trainable = RateNetwork> {
    pub net: S,
    pub optimizer: Optimizer,
    /// The controller's learned weights: LCP-KP's (B, G), LCP-LF's (Q); None otherwise.
    pub feedback: Option<Params>,
    /// LCP-KP: the optimizer of B and G (the network's settings, clipped on its own as the
    /// reference does).
    pub feedback_optimizer: Option<Optimizer>,
    pub history: Vec<EpochMetrics>,
}

/// Offset of the feedback weights' seed from `model.seed`: LCP-KP's B, G and LCP-LF's Q
/// start from the seed `model.seed ^ FEEDBACK_SEED`.
pub const FEEDBACK_SEED: u64 = 0x6c63_7369_6d5f_6662;

impl TrainingState<RateNetwork> {
    /// A fresh rate network (`[model]`) and optimizer for `config`, for `batches_per_epoch`
    /// batches per epoch.
    pub fn new(
        config: &Config,
        n_inputs: usize,
        n_classes: usize,
        batches_per_epoch: usize,
    ) -> Result<Self> {
        let net = RateNetwork::new(
            n_inputs,
            config.topology(),
            n_classes,
            config.model.activation,
            config.model.seed,
        )?;
        TrainingState::with_system(net, config, batches_per_epoch)
    }
}

impl<S: Trainable> TrainingState<S> {
    /// Training of `net` (any equilibrium system) from scratch with `config`'s method,
    /// optimizer and feedback settings, for `batches_per_epoch` batches per epoch.
    pub fn with_system(net: S, config: &Config, batches_per_epoch: usize) -> Result<Self> {
        let total = batches_per_epoch.saturating_mul(config.training.epochs);
        let settings = config.training.optimizer_settings(total);
        let optimizer = Optimizer::new(settings.clone())?;
        let seed = config.model.seed ^ FEEDBACK_SEED;
        let (feedback, feedback_optimizer) = match config.method.name {
            Method::LcpKp => (
                Some(kolen_pollack_of(&net)?.init_feedback(seed)),
                Some(Optimizer::new(settings)?),
            ),
            Method::LcpLf => {
                let q = initial_linear_feedback(&net, seed);
                (Some(Params::new(vec![("Q".into(), q)])), None)
            }
            _ => (None, None),
        };
        Ok(TrainingState {
            net,
            optimizer,
            feedback,
            feedback_optimizer,
            history: Vec::new(),
        })
    }

    /// One training step on a mini-batch: LCP-KP's decay, the free and controlled solves,
    /// and the optimizer steps of the network and of the feedback weights.
    fn step(
        &mut self,
        config: &Config,
        x: &DMatrix<f64>,
        targets: &DMatrix<f64>,
        tally: &mut Tally,
        noise_seed: u64,
    ) -> Result<bool> {
        if let (Some(kp), Some(fb)) = (&config.kp, self.feedback.as_mut()) {
            kolen_pollack_decay(&mut self.net, fb, kp.weight_decay);
        }
        let update = batch_step(
            config,
            &self.net,
            self.feedback.as_ref(),
            x,
            targets,
            tally,
            noise_seed,
        )?;
        let updated = update.network.is_some();
        if let Some(g) = update.network {
            self.optimizer.step(self.net.params_mut(), &g)?;
            if config.training.spectral_bound > 0.0 {
                bound_recurrent_weights(self.net.params_mut(), config.training.spectral_bound);
            }
        }
        match (update.feedback, self.feedback.as_mut()) {
            (Some(FeedbackUpdate::Descent(g)), Some(fb)) => {
                if let Some(opt) = self.feedback_optimizer.as_mut() {
                    opt.step(fb, &g)?;
                }
            }
            (Some(FeedbackUpdate::Set(q)), Some(fb)) => {
                for (name, t) in q.iter() {
                    crate::error::ensure_finite(&format!("parameters.{name}"), t.as_slice())?;
                }
                *fb = q
            }
            _ => {}
        }
        Ok(updated)
    }

    /// LCP-KP: the angles (degrees) between the first feedback tensor and the transpose it
    /// stands in for and between the readout's G and D^T (rate net: B vs W^T, G vs D^T; conv
    /// systems: their first B and G).
    pub fn feedback_angles(&self, config: &Config) -> (f64, f64) {
        match (&self.feedback, config.method.name) {
            (Some(fb), Method::LcpKp) => {
                let angles = kolen_pollack_angles(&self.net, fb);
                let at = |i: usize| angles.get(i).copied().unwrap_or(f64::NAN);
                (at(0), at(angles.len().max(2) - 1))
            }
            _ => (f64::NAN, f64::NAN),
        }
    }

    /// Completed epochs.
    pub fn epochs_done(&self) -> usize {
        self.history.len()
    }
}

/// Progress after one mini-batch.
#[derive(Clone, Debug)]
pub struct BatchProgress {
    pub epoch: usize,
    pub batch: usize,
    pub batches: usize,
    /// Running mean of the training loss in this epoch.
    pub loss: f64,
    /// Running training accuracy in this epoch.
    pub accuracy: f64,
    /// Running mean solver steps (controlled or adjoint solves).
    pub mean_steps: f64,
    /// Running fraction of converged solves.
    pub fraction_converged: f64,
    /// Running mean control magnitude H (NaN for the gradient baselines).
    pub mean_h: f64,
}

/// Receives what the loop produces.
pub trait Observer<S: Trainable = RateNetwork> {
    /// After every mini-batch.
    fn on_batch(&mut self, _progress: &BatchProgress) {}
    /// A warning about the epoch just trained (e.g. many unconverged solves), before its
    /// [`Observer::on_epoch`].
    fn on_warning(&mut self, _message: &str) {}
    /// After every completed epoch, with the state at its end (for checkpoints).
    fn on_epoch(&mut self, _state: &TrainingState<S>, _metrics: &EpochMetrics) -> Result<()> {
        Ok(())
    }
}

/// Why training ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// All configured epochs are done.
    Completed,
    /// The stop flag was raised; the state is that of the last completed epoch.
    Interrupted,
}

/// Fraction of unconverged update solves in an epoch above which the observer is warned.
pub const WARN_UNCONVERGED: f64 = 0.1;

/// Sums over one epoch.
#[derive(Default)]
struct Tally {
    samples: usize,
    loss: f64,
    /// Sum of the per-sample accuracies.
    correct: f64,
    h: f64,
    h_samples: usize,
    steps: f64,
    max_steps: usize,
    solves: usize,
    unconverged: usize,
    free_solves: usize,
    free_unconverged: usize,
    skipped: usize,
    /// Batches whose update changed the parameters.
    updated_batches: usize,
    /// Batches left out because their optimizer step was not finite.
    non_finite_batches: usize,
    /// Update solves (controlled or adjoint) that did not converge, by reason (the
    /// termination's name; for the messages).
    reasons: std::collections::BTreeMap<&'static str, usize>,
    /// The same, by metrics.csv's reason columns (`free` is filled at the epoch's end).
    by_reason: UnconvergedReasons,
    /// Controlled solves that ended at a fold of the branch.
    folds: usize,
    /// Controlled solves of the least-control methods (the folds' denominator).
    controlled_solves: usize,
    /// Accelerated equilibria checked by the flow certificate, and those it rejected.
    certified: usize,
    uncertified: usize,
}

impl Tally {
    /// imaml's conjugate-gradient solves as the update solves (iterations as steps).
    fn add_cg(&mut self, cg: &CgReport, tasks: usize) {
        self.steps += cg.mean_iterations * tasks as f64;
        self.max_steps = self.max_steps.max(cg.max_iterations);
        self.solves += tasks;
        self.unconverged += cg.unconverged;
        if cg.unconverged > 0 {
            *self.reasons.entry("cg-max-iterations").or_default() += cg.unconverged;
            self.by_reason.max_iterations += cg.unconverged;
        }
    }

    fn add_solves(&mut self, b: &BatchSteadyState) {
        for r in &b.records {
            self.steps += r.steps as f64;
            self.max_steps = self.max_steps.max(r.steps);
            self.solves += 1;
            if !r.converged() {
                self.count_unconverged(r);
            }
        }
        self.count_certificates(b);
    }

    /// An update solve that did not converge, counted by reason. An iteration limit is
    /// `max-iterations` for the solvers that do not follow the flow (their limit is
    /// `solver.max_iterations` or `ebd.steps`), `max-steps` for the integrators.
    fn count_unconverged(&mut self, r: &SteadyState) {
        self.unconverged += 1;
        let u = &mut self.by_reason;
        let (name, column) = match &r.termination {
            Termination::MaxSteps if !r.solver.follows_flow() => {
                ("max-iterations", &mut u.max_iterations)
            }
            Termination::MaxSteps => (r.termination.name(), &mut u.max_steps),
            Termination::MaxTime => (r.termination.name(), &mut u.max_time),
            Termination::Diverged => (r.termination.name(), &mut u.diverged),
            Termination::Unstable { .. } => (r.termination.name(), &mut u.unstable),
            Termination::Fold { .. } | Termination::Uncertified { .. } => {
                (r.termination.name(), &mut u.off_branch)
            }
            Termination::Stalled | Termination::SolverError(_) | Termination::Converged => {
                (r.termination.name(), &mut u.other)
            }
        };
        *column += 1;
        *self.reasons.entry(name).or_default() += 1;
    }

    /// The controlled solves of a least-control method: their folds.
    fn add_controlled(&mut self, b: &BatchSteadyState) {
        self.controlled_solves += b.records.len();
        let folds = b
            .records
            .iter()
            .filter(|r| matches!(r.termination, Termination::Fold { .. }));
        self.folds += folds.count();
    }

    /// Checked and rejected flow certificates of a batch of solves.
    fn count_certificates(&mut self, b: &BatchSteadyState) {
        self.certified += b.certified();
        self.uncertified += b.uncertified();
    }

    /// A warning when more than [`WARN_UNCONVERGED`] of the update solves did not converge,
    /// with their reasons counted.
    fn unconverged_warning(&self, epoch: usize) -> Option<String> {
        let fraction = self.unconverged as f64 / self.solves.max(1) as f64;
        if fraction <= WARN_UNCONVERGED {
            return None;
        }
        let by: Vec<String> = self
            .reasons
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        Some(format!(
            "epoch {epoch}: {:.1}% of the update solves did not converge ({}; {} of {} samples left out of the update)",
            100.0 * fraction,
            by.join(", "),
            self.skipped,
            self.samples
        ))
    }

    /// Why no batch of an epoch changed the parameters, counted: samples left out, update
    /// solves by how they ended, free solves unconverged, batches refused as non-finite.
    fn no_update_reasons(&self) -> String {
        let mut parts = vec![format!(
            "{} of {} samples left out of the update",
            self.skipped, self.samples
        )];
        if !self.reasons.is_empty() {
            let by: Vec<String> = self
                .reasons
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            parts.push(format!(
                "{} of {} update solves unconverged: {}",
                self.unconverged,
                self.solves,
                by.join(", ")
            ));
        }
        if self.free_unconverged > 0 {
            parts.push(format!(
                "{} of {} free solves unconverged",
                self.free_unconverged, self.free_solves
            ));
        }
        if self.non_finite_batches > 0 {
            parts.push(format!(
                "{} batches refused as non-finite (training.on_non_finite = \"skip\")",
                self.non_finite_batches
            ));
        }
        parts.join("; ")
    }
}

/// Trains from `state` until `config.training.epochs` epochs are complete or `stop` is
/// raised (checked between mini-batches; an interrupted epoch is discarded, so a resumed run
/// repeats it exactly).
pub fn train<S: Trainable>(
    config: &Config,
    data: &Split,
    mut state: TrainingState<S>,
    observer: &mut dyn Observer<S>,
    stop: &AtomicBool,
) -> Result<(TrainingState<S>, Outcome)> {
    let t = &config.training;
    let pool = thread_pool(t.threads)?;
    let diagnostics_batch = diagnostics_batch(config, data);
    while state.epochs_done() < t.epochs {
        let epoch = state.epochs_done() + 1;
        let start = Instant::now();
        let mut trial = state.clone();
        let batches = epoch_batches(data.train.len(), t.batch_size, t.seed, epoch);
        let mut tally = Tally::default();
        for (i, idx) in batches.iter().enumerate() {
            if stop.load(Ordering::SeqCst) {
                return Ok((state, Outcome::Interrupted));
            }
            let (x, targets) = data.train.batch(idx);
            let seed = noise_seed(t.seed, epoch, i);
            let before = (t.on_non_finite == OnNonFinite::Skip).then(|| trial.clone());
            match pool.install(|| trial.step(config, &x, &targets, &mut tally, seed)) {
                Ok(updated) => tally.updated_batches += usize::from(updated),
                Err(e) if e.is_non_finite_update() => match before {
                    Some(before) => {
                        trial = before;
                        tally.non_finite_batches += 1;
                        tally.skipped += idx.len();
                    }
                    None => {
                        return Err(LcsimError::AtBatch {
                            epoch,
                            batch: i + 1,
                            batches: batches.len(),
                            source: Box::new(e),
                        })
                    }
                },
                Err(e) => return Err(e),
            }
            observer.on_batch(&BatchProgress {
                epoch,
                batch: i + 1,
                batches: batches.len(),
                loss: tally.loss / tally.samples.max(1) as f64,
                accuracy: tally.correct / tally.samples.max(1) as f64,
                mean_steps: tally.steps / tally.solves.max(1) as f64,
                fraction_converged: 1.0 - tally.unconverged as f64 / tally.solves.max(1) as f64,
                mean_h: if tally.h_samples > 0 {
                    tally.h / tally.h_samples as f64
                } else {
                    f64::NAN
                },
            });
        }
        if tally.updated_batches == 0 {
            return Err(LcsimError::NoUpdate {
                epoch,
                reasons: tally.no_update_reasons(),
            });
        }
        let evaluate = epoch.is_multiple_of(t.eval_every) || epoch == t.epochs;
        let (test_loss, test_accuracy) = if evaluate {
            // An interrupted evaluation discards the epoch, like an interrupted batch loop.
            match pool.install(|| evaluate_free(config, &trial.net, &data.test, stop))? {
                Some(e) => (e.loss, e.accuracy),
                None => return Ok((state, Outcome::Interrupted)),
            }
        } else {
            (f64::NAN, f64::NAN)
        };
        let diagnostics = match &diagnostics_batch {
            Some((x, targets)) => {
                if stop.load(Ordering::SeqCst) {
                    return Ok((state, Outcome::Interrupted));
                }
                let (net, feedback) = (&trial.net, trial.feedback.as_ref());
                pool.install(|| diagnostics::diagnose(config, net, feedback, x, targets))?
                    .summary()
            }
            None => EpochDiagnostics::default(),
        };
        let n = tally.samples.max(1) as f64;
        let accuracy = |correct: f64| {
            if config.objective(1).loss.classifies() {
                correct / n
            } else {
                f64::NAN
            }
        };
        let (feedback_angle_w, feedback_angle_d) = trial.feedback_angles(config);
        let metrics = EpochMetrics {
            epoch,
            train_loss: tally.loss / n,
            train_accuracy: accuracy(tally.correct),
            test_loss,
            test_accuracy,
            mean_h: if tally.h_samples > 0 {
                tally.h / tally.h_samples as f64
            } else {
                f64::NAN
            },
            mean_steps: tally.steps / tally.solves.max(1) as f64,
            max_steps: tally.max_steps as f64,
            fraction_unconverged: tally.unconverged as f64 / tally.solves.max(1) as f64,
            fraction_free_unconverged: tally.free_unconverged as f64
                / tally.free_solves.max(1) as f64,
            skipped_samples: tally.skipped,
            learning_rate: trial.optimizer.current_learning_rate(),
            wall_time_s: start.elapsed().as_secs_f64(),
            feedback_angle_w,
            feedback_angle_d,
            fraction_folds: if tally.controlled_solves > 0 {
                tally.folds as f64 / tally.controlled_solves as f64
            } else {
                f64::NAN
            },
            fraction_uncertified: match tally.certified + tally.uncertified {
                0 => f64::NAN,
                n => tally.uncertified as f64 / n as f64,
            },
            diagnostics,
            unconverged: Some(UnconvergedReasons {
                free: tally.free_unconverged,
                ..tally.by_reason
            }),
        };
        if let Some(message) = tally.unconverged_warning(epoch) {
            observer.on_warning(&message);
        }
        trial.history.push(metrics.clone());
        state = trial;
        observer.on_epoch(&state, &metrics)?;
    }
    Ok((state, Outcome::Completed))
}

/// The fixed diagnostics batch (inputs, targets): the first `training.diagnostics_samples`
/// samples of the test split, or of the training split when there is no test split; None
/// when the diagnostics are off.
pub fn diagnostics_batch(config: &Config, data: &Split) -> Option<(DMatrix<f64>, DMatrix<f64>)> {
    let split = if data.test.is_empty() {
        &data.train
    } else {
        &data.test
    };
    let n = config.training.diagnostics_samples.min(split.len());
    (n > 0).then(|| split.batch(&(0..n).collect::<Vec<_>>()))
}

/// What [`time_batches`] measured.
#[derive(Clone, Debug)]
pub struct BatchTiming {
    pub threads: usize,
    pub samples: usize,
    pub seconds: f64,
    /// Mean steps (iterations) of the controlled or adjoint solves.
    pub mean_steps: f64,
    /// Fraction of those solves that did not converge.
    pub fraction_unconverged: f64,
}

impl BatchTiming {
    /// Training throughput.
    pub fn samples_per_second(&self) -> f64 {
        self.samples as f64 / self.seconds
    }
}

/// Trains on the first `batches` mini-batches of epoch 1 from `state` (free solve, update
/// of the configured method, optimizer step: the whole training step) on a pool of
/// `threads` workers, and times it. Nothing is evaluated or written.
pub fn time_batches<S: Trainable>(
    config: &Config,
    data: &Split,
    mut state: TrainingState<S>,
    batches: usize,
    threads: usize,
) -> Result<BatchTiming> {
    let t = &config.training;
    let pool = thread_pool(threads)?;
    let order = epoch_batches(data.train.len(), t.batch_size, t.seed, 1);
    let mut tally = Tally::default();
    let start = Instant::now();
    for (i, idx) in order.iter().take(batches).enumerate() {
        let (x, targets) = data.train.batch(idx);
        let seed = noise_seed(t.seed, 1, i);
        pool.install(|| state.step(config, &x, &targets, &mut tally, seed))?;
    }
    Ok(BatchTiming {
        threads: pool.current_num_threads(),
        samples: tally.samples,
        seconds: start.elapsed().as_secs_f64(),
        mean_steps: tally.steps / tally.solves.max(1) as f64,
        fraction_unconverged: tally.unconverged as f64 / tally.solves.max(1) as f64,
    })
}

/// A pool of `threads` workers (0 = one per core) for the per-sample solves.
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| {
            let allowed = format!("a thread count the system can start ({e})");
            invalid("training.threads", threads, &allowed)
        })
}

/// Loss and accuracy of free equilibria.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub fraction_unconverged: f64,
    /// The loss of each sample (task), in the data set's order.
    pub losses: Vec<f64>,
    /// The accuracy of each sample (a task's: the share of its query points), in order.
    pub accuracies: Vec<f64>,
}

/// The mean of `values` and the half-width of its normal 95% interval, `1.96 sd / sqrt(N)`
/// (sample standard deviation; NaN for fewer than two values).
pub fn mean_ci95(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, 1.96 * (var / n).sqrt())
}

/// Mean (unscaled) loss and accuracy of the free equilibria on a dataset; None when `stop`
/// rose before the last chunk.
pub fn evaluate_free<S: EquilibriumSystem>(
    config: &Config,
    net: &S,
    data: &Dataset,
    stop: &AtomicBool,
) -> Result<Option<Evaluation>> {
    let (mut losses, mut accuracies, mut unconverged) = (Vec::new(), Vec::new(), 0usize);
    let all: Vec<usize> = (0..data.len()).collect();
    for idx in all.chunks(config.training.batch_size.max(1)) {
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let (x, targets) = data.batch(idx);
        let objective = config.objective_scaled(crate::control::LossScale::PerSample, idx.len());
        let free = CoupledSystem::new(
            net,
            x,
            targets.clone(),
            objective,
            config.dynamics.tau_v,
            None,
        )?;
        let (phi, records) = free_equilibrium(&free, &config.solver);
        unconverged += records.map_or(0, |b| b.records.iter().filter(|r| !r.converged()).count());
        losses.extend(free.losses(&phi));
        accuracies.extend(free.accuracies(&phi));
    }
    let n = data.len().max(1) as f64;
    let classifies = config.objective(1).loss.classifies();
    Ok(Some(Evaluation {
        loss: losses.iter().sum::<f64>() / n,
        accuracy: if classifies {
            accuracies.iter().sum::<f64>() / n
        } else {
            f64::NAN
        },
        fraction_unconverged: unconverged as f64 / n,
        losses,
        accuracies,
    }))
}

/// The spectral bound of `[training] spectral_bound`: ||W||_2 <= bound for the recurrent
/// weights (the tensor named "W"), by [`crate::numerics::spectral::project_spectral_norm`].
pub fn bound_recurrent_weights(params: &mut crate::system::params::Params, bound: f64) {
    let idx = params.names().position(|n| n == "W");
    if let Some(i) = idx {
        crate::numerics::spectral::project_spectral_norm(params.tensor_mut(i), bound);
    }
}

/// The seed of LCP-LF's noise in mini-batch `batch` (from 0) of `epoch`: a function of
/// the training seed and the batch alone, so a resumed run draws the same noise.
fn noise_seed(seed: u64, epoch: usize, batch: usize) -> u64 {
    let mut rng =
        crate::numerics::rng::Rng::seed_from_u64(seed ^ ((epoch as u64) << 32) ^ batch as u64);
    (rng.uniform() * 2f64.powi(53)) as u64
}

/// What one mini-batch asks the optimizers to do.
struct BatchUpdate {
    /// Descent direction of the network's parameters (None when every sample was skipped).
    network: Option<Params>,
    feedback: Option<FeedbackUpdate>,
}

/// How the controller's learned feedback changes.
enum FeedbackUpdate {
    /// LCP-KP: a descent direction for B, G (through their optimizer).
    Descent(Params),
    /// LCP-LF: the new Q of the noisy phase.
    Set(Params),
}

impl BatchUpdate {
    fn network(network: Option<Params>) -> Self {
        BatchUpdate {
            network,
            feedback: None,
        }
    }
}

/// One mini-batch: free equilibrium (train metrics), then the update of the configured
/// method.
fn batch_step<S: EquilibriumSystem>(
    config: &Config,
    net: &S,
    feedback: Option<&Params>,
    x: &DMatrix<f64>,
    targets: &DMatrix<f64>,
    tally: &mut Tally,
    noise_seed: u64,
) -> Result<BatchUpdate> {
    let b = x.ncols();
    let objective = config.objective(b);
    let tau_v = config.dynamics.tau_v;
    let free = CoupledSystem::new(net, x.clone(), targets.clone(), objective, tau_v, None)?;
    let (phi0, free_records) = free_equilibrium(&free, &config.solver);
    if let Some(r) = &free_records {
        tally.free_solves += r.records.len();
        tally.free_unconverged += r.records.iter().filter(|r| !r.converged()).count();
        tally.count_certificates(r);
    }
    tally.samples += b;
    tally.loss += free.loss_values(&phi0).iter().sum::<f64>();
    tally.correct += free.accuracies(&phi0).iter().sum::<f64>();

    let method = config.method.name;
    match method {
        Method::LcpDi | Method::LcpKp | Method::LcpLf | Method::LcpEbd => {
            let controller = config.controller_settings();
            let settings = config.variant(method, controller);
            let eq = ControlledEquilibrium::find(&settings, feedback, &free, &phi0)?;
            tally.add_solves(&eq.solve);
            tally.add_controlled(&eq.solve);
            let keep = kept_samples(config, &[&eq.solve])?;
            tally.skipped += b - keep.len();
            if keep.is_empty() {
                return Ok(BatchUpdate::network(None));
            }
            let eq = eq.select_samples(&keep);
            let h = eq.control_magnitudes();
            tally.h += h.iter().sum::<f64>();
            tally.h_samples += h.len();
            let mut update = eq.update()?;
            let feedback = match (method, &config.lf) {
                (Method::LcpKp, _) => Some(FeedbackUpdate::Descent(kolen_pollack_descent(
                    net, &update,
                )?)),
                (Method::LcpLf, Some(lf)) => {
                    let q = eq.learn_q(lf, noise_seed)?;
                    Some(FeedbackUpdate::Set(Params::new(vec![("Q".into(), q)])))
                }
                _ => None,
            };
            update.scale(-1.0);
            Ok(BatchUpdate {
                network: Some(update),
                feedback,
            })
        }
        Method::Imaml | Method::Fomaml => {
            let meta = config.meta_settings();
            // The meta-gradient is exact only at the inner solutions.
            let solves: Vec<&BatchSteadyState> = free_records.iter().collect();
            let keep = kept_samples(config, &solves)?;
            tally.skipped += b - keep.len();
            if keep.is_empty() {
                return Ok(BatchUpdate::network(None));
            }
            let (free, phi0) = if keep.len() == b {
                (free, phi0)
            } else {
                (free.select_samples(&keep), phi0.select_columns(&keep))
            };
            let g = if method == Method::Imaml {
                let (g, cg) = implicit_meta_gradient(
                    &free,
                    &phi0,
                    meta.cg_tolerance,
                    meta.cg_max_iterations,
                )?;
                tally.add_cg(&cg, keep.len());
                g
            } else {
                first_order_meta_gradient(&free, &phi0)?
            };
            Ok(BatchUpdate::network(Some(g)))
        }
        Method::Rbp | Method::Bp => {
            let opts = match config.method.name {
                // On a layered net the adjoint iteration is exact after one sweep per layer.
                Method::Bp => SolverSettings {
                    method: SolverMethod::Euler,
                    euler: EulerSettings { dt: 1.0 },
                    ..config.solver.clone()
                },
                _ => config.solver.clone(),
            };
            let (gradient, adjoints) = rbp_gradient(&free, &phi0, &opts);
            tally.add_solves(&adjoints);
            // The gradient is exact only at a free equilibrium: its solve counts too.
            let solves: Vec<&BatchSteadyState> = free_records.iter().chain([&adjoints]).collect();
            let keep = kept_samples(config, &solves)?;
            tally.skipped += b - keep.len();
            if keep.len() == b {
                return Ok(BatchUpdate::network(Some(gradient)));
            }
            if keep.is_empty() {
                return Ok(BatchUpdate::network(None));
            }
            let g = gradient_from_adjoints(
                &free.select_samples(&keep),
                &phi0.select_columns(&keep),
                &adjoints.states.select_columns(&keep),
            );
            Ok(BatchUpdate::network(Some(g)))
        }
    }
}

/// Samples whose solves (one record per sample in each of `solves`) all enter the update:
/// diverged or failed solves never do; unconverged ones as `method.on_unconverged` says.
pub fn kept_samples(config: &Config, solves: &[&BatchSteadyState]) -> Result<Vec<usize>> {
    let batch = solves.first().map_or(0, |s| s.records.len());
    let mut keep = Vec::new();
    for j in 0..batch {
        let mut usable = true;
        for r in solves.iter().map(|s| &s.records[j]) {
            let finite = r.state.iter().all(|v| v.is_finite());
            usable &= match (&r.termination, config.method.on_unconverged) {
                (Termination::Converged, _) => finite,
                (Termination::Diverged | Termination::SolverError(_), _) => false,
                (_, OnUnconverged::Use) => finite,
                (_, OnUnconverged::Skip) => false,
                (t, OnUnconverged::Stop) => {
                    let limit = match t {
                        Termination::MaxTime => "a larger solver.max_time",
                        Termination::MaxSteps if config.solver.method.follows_flow() => {
                            "a larger solver.max_steps"
                        }
                        // LCP-EBD's Adam descent is capped by ebd.steps.
                        Termination::MaxSteps
                            if config.method.name == Method::LcpEbd
                                && config.ebd.as_ref().is_some_and(|e| {
                                    e.descent == crate::learn::energy::EnergyDescentMethod::Adam
                                }) =>
                        {
                            "a larger ebd.steps"
                        }
                        Termination::MaxSteps => "a larger solver.max_iterations",
                        Termination::Fold { .. } => "a smaller method.branch_min_step",
                        _ => "another solver.method or tighter solver settings",
                    };
                    return Err(LcsimError::Unconverged {
                        termination: t.name().to_string(),
                        steps: r.steps,
                        time: r.time,
                        residual: r.residual,
                        remedy: format!(
                            "{limit}, or method.on_unconverged = \"use\" or \"skip\" to continue past unconverged solves"
                        ),
                    });
                }
            };
        }
        if usable {
            keep.push(j);
        }
    }
    Ok(keep)
}

/// The train/test split that `[data]` describes (the tasks of `[meta]` for the task
/// sources), with its limits applied.
pub fn load_split(run: &Config) -> Result<Split> {
    let config = &run.data;
    use crate::data::{digits, mnist, split, two_moons, xor, DataSource};
    let limit = |n: usize| (n > 0).then_some(n);
    let mut s = match config.source {
        DataSource::Digits => digits(config.test_fraction, config.seed)?,
        DataSource::Mnist => mnist(
            &config.mnist_dir,
            limit(config.train_limit),
            limit(config.test_limit),
        )?,
        DataSource::Cifar10 => crate::data::cifar10(
            &config.cifar_dir,
            limit(config.train_limit),
            limit(config.test_limit),
        )?,
        DataSource::Xor => split(
            xor(config.synthetic_samples, 0.1, config.seed),
            config.test_fraction,
            config.seed,
        )?,
        DataSource::TwoMoons => split(
            two_moons(config.synthetic_samples, 0.1, config.seed),
            config.test_fraction,
            config.seed,
        )?,
        DataSource::Sinusoid => crate::tasks::sinusoid_split(&run.meta_settings(), config.seed)?,
        DataSource::FewshotMnist | DataSource::FewshotDigits => crate::tasks::fewshot_split(run)?,
    };
    let cut = |d: &Dataset, n: usize| {
        if n > 0 && n < d.len() {
            d.subset(&(0..n).collect::<Vec<_>>())
        } else {
            d.clone()
        }
    };
    s.train = cut(&s.train, config.train_limit);
    s.test = cut(&s.test, config.test_limit);
    Ok(s)
}
