//! Configs, training, run folders and resume.

mod common;

use common::lcsim_in;
use lcsim::config::{Config, KEY_DOCS};
use lcsim::io::metrics::EpochMetrics;
use lcsim::run::RunDir;
use lcsim::system::EquilibriumSystem;
use lcsim::train::{load_split, train, Observer, Outcome, TrainingState};
use std::sync::atomic::{AtomicBool, Ordering};

fn xor_config(method: &str, kind: &str, hidden: &str, epochs: usize) -> Config {
    xor_config_lr(method, kind, hidden, epochs, 0.03)
}

fn xor_config_lr(method: &str, kind: &str, hidden: &str, epochs: usize, lr: f64) -> Config {
    let sets = [
        format!("method.name=\"{method}\""),
        format!("model.kind=\"{kind}\""),
        format!("model.hidden={hidden}"),
        "data.source=\"xor\"".into(),
        "data.synthetic_samples=200".into(),
        format!("training.epochs={epochs}"),
        "training.batch_size=16".into(),
        format!("training.learning_rate={lr}"),
        // The settings these tests were calibrated on (the reference's alpha, not the default).
        "controller.alpha=0.1".into(),
        "solver.atol=1e-7".into(),
    ];
    Config::load(None, &sets).unwrap()
}

fn fresh_state(config: &Config) -> (lcsim::data::Split, TrainingState) {
    let data = load_split(config).unwrap();
    let batches = data.train.len().div_ceil(config.training.batch_size);
    let state =
        TrainingState::new(config, data.train.n_inputs(), data.train.n_classes, batches).unwrap();
    (data, state)
}

struct Recorder(Vec<EpochMetrics>);
impl Observer for Recorder {
    fn on_epoch(&mut self, _: &TrainingState, m: &EpochMetrics) -> lcsim::error::Result<()> {
        self.0.push(m.clone());
        Ok(())
    }
}

#[test]
fn each_method_learns_xor() {
    // Recurrent nets need gentler steps: at 0.03 RBP grows W until the free dynamics stop
    // converging, and at 0.01 LCP-DI settles into a bistable net whose controlled
    // equilibrium sits in another basin than the free one (tiny H, wrong free output).
    for (method, kind, hidden, lr) in [
        ("lcp-di", "rnn", "[8]", 0.02),
        ("rbp", "rnn", "[8]", 0.01),
        ("bp", "ff", "[8, 8]", 0.03),
        ("lcp-di", "ff", "[8, 8]", 0.03),
        ("lcp-kp", "ff", "[8, 8]", 0.03),
        ("lcp-lf", "ff", "[8, 8]", 0.03),
        ("lcp-ebd", "rnn", "[8]", 0.02),
        ("lcp-ebd", "ff", "[8, 8]", 0.03),
    ] {
        let config = xor_config_lr(method, kind, hidden, 30, lr);
        let (data, state) = fresh_state(&config);
        let mut rec = Recorder(Vec::new());
        let (state, outcome) =
            train(&config, &data, state, &mut rec, &AtomicBool::new(false)).unwrap();
        assert_eq!(outcome, Outcome::Completed);
        assert_eq!(state.epochs_done(), 30);
        let first = &rec.0[0];
        let last = rec.0.last().unwrap();
        assert!(
            last.test_accuracy >= 0.9,
            "{method} {kind}: test accuracy {}",
            last.test_accuracy
        );
        assert!(
            last.train_loss < 0.5 * first.train_loss,
            "{method} {kind}: loss {} -> {}",
            first.train_loss,
            last.train_loss
        );
        if method.starts_with("lcp") {
            // The principle's signature: less control is needed as the task is learned.
            assert!(
                last.mean_h < 0.5 * first.mean_h,
                "H {} -> {}",
                first.mean_h,
                last.mean_h
            );
        } else {
            assert!(last.mean_h.is_nan());
        }
        assert_eq!(last.fraction_unconverged, 0.0);
        if method == "lcp-kp" {
            assert!(last.feedback_angle_w < first.feedback_angle_w);
        } else {
            assert!(last.feedback_angle_w.is_nan() && last.feedback_angle_d.is_nan());
        }
    }
}

#[test]
fn kolen_pollack_feedback_aligns_with_the_transposes_over_training() {
    for (kind, hidden, lr) in [("ff", "[8, 8]", 0.03), ("rnn", "[8]", 0.02)] {
        let config = xor_config_lr("lcp-kp", kind, hidden, 20, lr);
        let (data, state) = fresh_state(&config);
        let (w0, d0) = state.feedback_angles(&config);
        assert!(
            w0 > 60.0 && d0 > 40.0,
            "{kind}: random start {w0:.1} / {d0:.1} degrees"
        );
        let mut rec = Recorder(Vec::new());
        train(&config, &data, state, &mut rec, &AtomicBool::new(false)).unwrap();
        let angles: Vec<(f64, f64)> = rec
            .0
            .iter()
            .map(|m| (m.feedback_angle_w, m.feedback_angle_d))
            .collect();
        let (w, d) = angles[19];
        assert!(
            w < 0.6 * w0 && d < 0.8 * d0 && w < angles[4].0 && d < angles[4].1,
            "{kind}: angles B vs W^T, G vs D^T from ({w0:.1}, {d0:.1}): {angles:.1?}"
        );
    }
}

#[test]
fn interrupted_and_resumed_run_equals_uninterrupted_run() {
    for method in ["lcp-di", "lcp-kp", "lcp-lf"] {
        resume_matches(method);
    }
}

fn resume_matches(method: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = xor_config(method, "rnn", "[6]", 3);
    config.output.dir = dir.path().to_path_buf();
    config.output.name = "resumed".into();

    // Uninterrupted.
    let (data, state) = fresh_state(&config);
    let (full, _) = train(
        &config,
        &data,
        state,
        &mut Recorder(Vec::new()),
        &AtomicBool::new(false),
    )
    .unwrap();

    // Stopped after epoch 1 (the flag is raised in the observer), checkpointed, resumed.
    struct StopAfterFirst<'a> {
        run: RunDir,
        stop: &'a AtomicBool,
    }
    impl Observer for StopAfterFirst<'_> {
        fn on_epoch(&mut self, s: &TrainingState, _: &EpochMetrics) -> lcsim::error::Result<()> {
            self.run.save_epoch(s)?;
            self.stop.store(true, Ordering::SeqCst);
            Ok(())
        }
    }
    let (run, _lock) = RunDir::create(&config, "test", None).unwrap();
    let stop = AtomicBool::new(false);
    let (_, state) = fresh_state(&config);
    let (partial, outcome) = train(
        &config,
        &data,
        state,
        &mut StopAfterFirst {
            run: run.clone(),
            stop: &stop,
        },
        &stop,
    )
    .unwrap();
    assert_eq!(outcome, Outcome::Interrupted);
    assert_eq!(partial.epochs_done(), 1);

    let (reopened, config2) = RunDir::open(&run.path).unwrap();
    assert_eq!(config2, config, "config.toml round-trips");
    let (_, fresh) = fresh_state(&config2);
    let resumed = reopened.load_checkpoint(fresh).unwrap();
    assert_eq!(resumed.epochs_done(), 1);
    let (done, outcome) = train(
        &config2,
        &data,
        resumed,
        &mut Recorder(Vec::new()),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(
        done.net.params(),
        full.net.params(),
        "{method}: bit-identical parameters"
    );
    assert_eq!(
        done.feedback, full.feedback,
        "{method}: same feedback weights"
    );
    let strip = |h: &[EpochMetrics]| {
        let rows: Vec<_> = h
            .iter()
            .map(|m| {
                let mut m = EpochMetrics {
                    wall_time_s: 0.0,
                    ..m.clone()
                };
                // The reason of failed diagnostics is not stored in metrics.csv.
                m.diagnostics.failure.clear();
                m
            })
            .collect();
        format!("{rows:?}")
    };
    assert_eq!(strip(&done.history), strip(&full.history), "{method}");
}

#[test]
fn same_seed_same_numbers() {
    let config = xor_config("lcp-di", "rnn", "[5]", 2);
    let run = || {
        let (data, state) = fresh_state(&config);
        train(
            &config,
            &data,
            state,
            &mut Recorder(Vec::new()),
            &AtomicBool::new(false),
        )
        .unwrap()
        .0
    };
    assert_eq!(run().net.params(), run().net.params());
}

#[test]
fn training_is_identical_at_any_thread_count() {
    use lcsim::solve::SolverMethod;
    for (method, solver) in [
        ("lcp-di", SolverMethod::Anderson),
        ("lcp-di", SolverMethod::NewtonKrylov),
        ("lcp-di", SolverMethod::Tsit45),
        ("rbp", SolverMethod::Anderson),
        ("lcp-kp", SolverMethod::Anderson),
        ("lcp-lf", SolverMethod::Anderson),
        ("lcp-ebd", SolverMethod::NewtonKrylov),
    ] {
        let run = |threads: usize| {
            let mut config = xor_config(method, "rnn", "[6]", 2);
            config.training.threads = threads;
            config.solver.method = solver;
            config.solver.accelerated.chunk = 5;
            let (data, state) = fresh_state(&config);
            let mut rec = Recorder(Vec::new());
            let state = train(&config, &data, state, &mut rec, &AtomicBool::new(false))
                .unwrap()
                .0;
            let metrics: Vec<_> = rec
                .0
                .into_iter()
                .map(|m| EpochMetrics {
                    wall_time_s: 0.0,
                    ..m
                })
                .collect();
            // The diagnostics are measured (and so compared) on every epoch.
            for m in &metrics {
                let d = &m.diagnostics;
                assert!(
                    d.free_spectral_abscissa.is_finite() && d.fraction_free_converged > 0.0,
                    "{method}: {d:?}"
                );
                if method != "rbp" {
                    assert!(
                        d.alignment_cosine.is_finite() && d.fraction_basin_switch.is_finite(),
                        "{method}: {d:?}"
                    );
                }
            }
            // Debug text: NaN entries (H of rbp) compare equal too.
            (
                format!("{:?} {:?}", state.net.params(), state.feedback),
                format!("{metrics:?}"),
            )
        };
        let one = run(1);
        assert_eq!(one, run(2), "{method} {solver:?}");
        assert_eq!(one, run(3), "{method} {solver:?}");
    }
}

#[test]
fn config_errors_name_the_key() {
    for (sets, key) in [
        (vec!["controller.alpa=0.1"], "controller.alpa"),
        (vec!["controller.alpha=-1"], "controller.alpha"),
        (vec!["training.batch_size=0"], "training.batch_size"),
        (vec!["training.batch_size=-3"], "training.batch_size"),
        (vec!["training.min_lr_factor=2"], "training.min_lr_factor"),
        (
            vec![
                "training.schedule=\"constant\"",
                "training.min_lr_factor=-3",
            ],
            "training.min_lr_factor",
        ),
        (vec!["dynamics.tau_u=0"], "tau_u"),
        (vec!["model.hidden=[4, 4]"], "model.hidden"),
        (vec!["model=3"], "model"),
        (vec!["training.epochs=\"three\""], "epochs"),
        (vec!["solver.atol=0"], "solver.atol"),
        (vec!["method.name=\"bp\""], "method.name"),
        (vec!["data.test_fraction=1.5"], "data.test_fraction"),
        (vec!["model.hidden=[0]"], "model.hidden"),
        (vec!["training.threads=5000"], "training.threads"),
        (vec!["solver.method=\"andersen\""], "solver.method"),
        (vec!["solver.fallback=\"rk4\""], "solver.fallback"),
        (vec!["solver.anderson_step=0"], "solver.anderson_step"),
        (vec!["solver.stability_dim=0"], "solver.stability_dim"),
    ] {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let err = Config::load(None, &sets)
            .expect_err(&format!("{sets:?} must fail"))
            .to_string();
        assert!(err.contains(key), "{sets:?}: {err}");
    }
}

#[test]
fn config_file_with_unknown_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[controller]\nalpha = 0.2\nbeta = 3\n").unwrap();
    let err = Config::load(Some(&path), &[]).unwrap_err().to_string();
    assert!(err.contains("beta") && err.contains("c.toml"), "{err}");
    std::fs::write(&path, "[controller]\nalpha = 0.2\n").unwrap();
    let c = Config::load(Some(&path), &["controller.k_i=2".into()]).unwrap();
    assert_eq!((c.controller.alpha, c.controller.k_i), (0.2, 2.0));
}

#[test]
fn default_config_is_documented_and_round_trips() {
    let text = Config::default_toml();
    let parsed: Config = toml::from_str(&text).unwrap();
    assert_eq!(parsed, Config::default());
    let table: toml::Table = text.parse().unwrap();
    for (section, value) in &table {
        for key in value.as_table().unwrap().keys() {
            let full = format!("{section}.{key}");
            assert!(
                KEY_DOCS.iter().any(|(k, _)| *k == full),
                "{full} has no documentation"
            );
        }
    }
}

const TINY: [&str; 10] = [
    "--set",
    "data.source=\"xor\"",
    "--set",
    "model.hidden=[4]",
    "--set",
    "training.epochs=2",
    "--set",
    "data.synthetic_samples=40",
    "--set",
    "output.figures=false",
];

#[test]
fn cli_train_writes_a_complete_run_folder_and_never_overwrites_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["train", "--quiet"];
    args.extend(TINY);
    let o = lcsim_in(dir.path(), &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = dir.path().join("runs/lcp-di-rnn-xor-seed0");
    for f in [
        "config.toml",
        "run.json",
        "metrics.csv",
        "checkpoint.npz",
        "params.npz",
        "summary.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("results: runs/lcp-di-rnn-xor-seed0"),
        "{stdout}"
    );
    assert_eq!(
        lcsim::io::metrics::read_csv(&run.join("metrics.csv"))
            .unwrap()
            .len(),
        2
    );

    // Running the same command again gets a fresh folder; the first is untouched.
    let before = std::fs::read(run.join("params.npz")).unwrap();
    let o = lcsim_in(dir.path(), &args);
    assert!(o.status.success());
    let summary =
        std::fs::read(dir.path().join("runs/lcp-di-rnn-xor-seed0-2/summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&summary).unwrap();
    assert_eq!(summary["run"], "lcp-di-rnn-xor-seed0-2");
    assert_eq!(summary["epochs"], 2);
    assert_eq!(std::fs::read(run.join("params.npz")).unwrap(), before);

    // A chosen name that exists is refused, naming the key.
    args.extend(["--set", "output.name=\"lcp-di-rnn-xor-seed0\""]);
    let o = lcsim_in(dir.path(), &args);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("output.name"));
}

#[test]
fn cli_bad_input_fails_before_a_run_folder_exists() {
    let dir = tempfile::tempdir().unwrap();
    for (set, named) in [
        ("controller.alpha=-1", "controller.alpha"),
        ("training.batch_size=-3", "training.batch_size"),
        ("training.epocs=3", "training.epocs"),
        ("data.source=\"mnist\"", "no/such/dir"),
    ] {
        let mut args = vec!["train", "--quiet"];
        args.extend(TINY);
        args.extend(["--set", set, "--set", "data.mnist_dir=\"no/such/dir\""]);
        let o = lcsim_in(dir.path(), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{set} must fail");
        assert!(
            err.contains(named) && err.lines().count() == 1,
            "{set}: {err}"
        );
        assert!(!dir.path().join("runs").exists(), "{set} left a run folder");
    }
}

#[test]
fn cli_resume_of_a_finished_run_changes_nothing_and_plot_redraws() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["train", "--quiet"];
    args.extend(TINY);
    assert!(lcsim_in(dir.path(), &args).status.success());
    let run = "runs/lcp-di-rnn-xor-seed0";
    let o = lcsim_in(dir.path(), &["train", "--resume", run]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("finished"));
    let o = lcsim_in(dir.path(), &["plot", run, "--format", "svg"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "learning_curves.svg",
        "control_magnitude.svg",
        "solver_statistics.svg",
    ] {
        assert!(
            dir.path().join(run).join("figures").join(f).is_file(),
            "{f}"
        );
    }
}

#[test]
fn unconverged_solves_are_used_skipped_or_stop_training_as_configured() {
    for method in ["lcp-di", "rbp"] {
        let with = |policy: &str| {
            let c = Config::load(
                None,
                &[
                    format!("method.name=\"{method}\""),
                    "model.hidden=[4]".into(),
                    "data.source=\"xor\"".into(),
                    "data.synthetic_samples=40".into(),
                    "training.epochs=1".into(),
                    "solver.method=\"euler\"".into(),
                    "solver.max_steps=2".into(),
                    format!("method.on_unconverged=\"{policy}\""),
                ],
            )
            .unwrap();
            let (data, state) = fresh_state(&c);
            let initial = state.net.params().clone();
            let mut rec = Recorder(Vec::new());
            let result = train(&c, &data, state, &mut rec, &AtomicBool::new(false));
            (initial, result.map(|(s, _)| s), rec.0, data.train.len())
        };
        // Two Euler steps never reach a steady state.
        let (initial, used, metrics, n) = with("use");
        let used = used.unwrap();
        assert_eq!(metrics[0].fraction_unconverged, 1.0, "{method}");
        assert_eq!(metrics[0].skipped_samples, 0, "{method}");
        assert_ne!(used.net.params(), &initial, "{method}: 'use' updates");

        // Skipping every sample leaves nothing to learn from: an error, not a finished epoch.
        let (_, skipped, metrics, n2) = with("skip");
        assert_eq!(n, n2);
        let Err(err) = skipped else {
            panic!("{method}: an epoch without an update must stop")
        };
        let err = err.to_string();
        assert!(
            err.contains(&format!("{n} of {n} samples left out")) && err.contains("max-steps"),
            "{method}: {err}"
        );
        assert!(metrics.is_empty(), "{method}");

        let (_, stopped, _, _) = with("stop");
        let Err(err) = stopped else {
            panic!("{method}: 'stop' must stop")
        };
        let err = err.to_string();
        assert!(
            err.contains("method.on_unconverged") && err.contains("max-steps"),
            "{err}"
        );
    }
}

#[test]
fn stop_in_the_middle_of_an_epoch_discards_it_and_resume_matches() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = xor_config("rbp", "rnn", "[6]", 3);
    config.output.dir = dir.path().to_path_buf();
    let (data, state) = fresh_state(&config);
    let (full, _) = train(
        &config,
        &data,
        state,
        &mut Recorder(Vec::new()),
        &AtomicBool::new(false),
    )
    .unwrap();

    // Checkpoints after each epoch; the stop flag rises (Ctrl-C) at a batch of epoch 2: in
    // the batch loop, or after its last batch, i.e. during the test evaluation.
    struct StopMidEpoch<'a> {
        run: RunDir,
        stop: &'a AtomicBool,
        at_batch: usize,
    }
    impl Observer for StopMidEpoch<'_> {
        fn on_batch(&mut self, p: &lcsim::train::BatchProgress) {
            if p.epoch == 2 && p.batch == self.at_batch.min(p.batches) {
                self.stop.store(true, Ordering::SeqCst);
            }
        }
        fn on_epoch(&mut self, s: &TrainingState, _: &EpochMetrics) -> lcsim::error::Result<()> {
            self.run.save_epoch(s)
        }
    }
    for at_batch in [3, usize::MAX] {
        config.output.name = format!("stop-at-{at_batch}");
        let (run, _lock) = RunDir::create(&config, "test", None).unwrap();
        let stop = AtomicBool::new(false);
        let (_, state) = fresh_state(&config);
        let mut observer = StopMidEpoch {
            run: run.clone(),
            stop: &stop,
            at_batch,
        };
        let (partial, outcome) = train(&config, &data, state, &mut observer, &stop).unwrap();
        assert_eq!(outcome, Outcome::Interrupted);
        assert_eq!(
            partial.epochs_done(),
            1,
            "the interrupted epoch is discarded"
        );
        assert!(!run.is_finished());

        let (reopened, config2) = RunDir::open(&run.path).unwrap();
        let (_, fresh) = fresh_state(&config2);
        let resumed = reopened.load_checkpoint(fresh).unwrap();
        let (done, outcome) = train(
            &config2,
            &data,
            resumed,
            &mut Recorder(Vec::new()),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(outcome, Outcome::Completed);
        assert_eq!(
            done.net.params(),
            full.net.params(),
            "bit-identical parameters"
        );
    }
}
