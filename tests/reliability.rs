//! Reliability regressions (issue 17): each test reproduces a defect that was measured and
//! fails without its fix.

mod common;

use common::{idx_bytes, lcsim_in, TINY};
use lcsim::config::Config;
use lcsim::error::LcsimError;
use lcsim::optim::{Optimizer, OptimizerKind, OptimizerSettings};
use lcsim::system::params::Params;
use lcsim::train::{load_split, train, Observer, TrainingState};
use nalgebra::DMatrix;
use std::path::Path;
use std::sync::atomic::AtomicBool;

fn params(value: f64) -> Params {
    Params::new(vec![
        ("b".into(), DMatrix::from_element(2, 1, 0.5)),
        ("W".into(), DMatrix::from_element(2, 2, value)),
    ])
}

fn settings(kind: OptimizerKind, lr: f64, weight_decay: f64) -> OptimizerSettings {
    OptimizerSettings {
        kind,
        learning_rate: lr,
        weight_decay,
        ..OptimizerSettings::default()
    }
}

/// SGD: `theta - lr g` overflows for `lr = 1e308`, `g = 10` (closed form: -1e309 = -inf);
/// the step is refused naming the tensor, and parameters and step count are unchanged.
#[test]
fn sgd_step_that_overflows_is_refused_and_changes_nothing() {
    let mut opt = Optimizer::new(settings(OptimizerKind::Sgd, 1e308, 0.0)).unwrap();
    let mut p = params(1.0);
    let mut g = params(0.0);
    g.tensor_mut(1).fill(10.0);
    g.tensor_mut(0).fill(0.0);
    let err = opt.step(&mut p, &g).unwrap_err();
    assert!(
        matches!(&err, LcsimError::NonFiniteUpdate { what, tensor, step: 1, .. }
            if what == "parameter" && tensor == "W"),
        "{err}"
    );
    assert!(err.is_non_finite_update());
    assert_eq!(p, params(1.0));
    assert_eq!(opt.steps_taken(), 0);
    // A finite step still works afterwards, exactly theta - lr g.
    let mut opt = Optimizer::new(settings(OptimizerKind::Sgd, 0.1, 0.0)).unwrap();
    opt.step(&mut p, &g).unwrap();
    assert_eq!(p.tensor(1)[(0, 0)], 1.0 - 0.1 * 10.0);
}

/// Adam with coupled weight decay 1e199 on theta = 1: g = 1e199 is finite but
/// v = (1 - beta2) g^2 overflows, while the parameter step m / sqrt(v) is 0 (finite): the
/// second moment alone is non-finite. It must be refused and never reach a checkpoint.
#[test]
fn adam_second_moment_overflow_is_refused_and_state_stays_resumable() {
    let s = settings(OptimizerKind::Adam, 1e-3, 1e199);
    let mut opt = Optimizer::new(s.clone()).unwrap();
    let mut p = params(1.0);
    let g = params(0.0);
    let err = opt.step(&mut p, &g).unwrap_err();
    assert!(
        matches!(&err, LcsimError::NonFiniteUpdate { what, .. } if what == "second moment"),
        "{err}"
    );
    assert_eq!(p, params(1.0));
    // The state the program holds can always be resumed.
    Optimizer::from_state(s, opt.state()).unwrap();
}

fn xor(sets: &[&str]) -> Config {
    let mut all: Vec<String> = [
        "data.source=\"xor\"",
        "data.synthetic_samples=40",
        "model.hidden=[4]",
        "training.epochs=1",
        "training.batch_size=16",
        "training.diagnostics_samples=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(sets.iter().map(|s| s.to_string()));
    Config::load(None, &all).unwrap()
}

struct Quiet;
impl Observer for Quiet {}

/// The error training `config` from scratch ends with (a test failure if it succeeds).
fn run(config: &Config) -> LcsimError {
    let data = load_split(config).unwrap();
    let batches = data.train.len().div_ceil(config.training.batch_size);
    let state =
        TrainingState::new(config, data.train.n_inputs(), data.train.n_classes, batches).unwrap();
    match train(config, &data, state, &mut Quiet, &AtomicBool::new(false)) {
        Ok(_) => panic!("training must fail"),
        Err(e) => e,
    }
}

/// The training loop stops at the first non-finite step naming tensor, epoch and batch;
/// with `training.on_non_finite = "skip"` every batch is refused, the parameters stay the
/// initial ones, and an epoch without any update is an error, not a finished run.
#[test]
fn non_finite_update_stops_training_at_its_batch_or_is_skipped() {
    let c = xor(&["training.weight_decay=1e199"]);
    let err = run(&c);
    let msg = err.to_string();
    assert!(
        matches!(
            &err,
            LcsimError::AtBatch {
                epoch: 1,
                batch: 1,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("second moment `") && msg.contains("batch 1 of 2"),
        "{msg}"
    );

    let c = xor(&[
        "training.weight_decay=1e199",
        "training.on_non_finite=\"skip\"",
    ]);
    let err = run(&c);
    assert!(
        matches!(&err, LcsimError::NoUpdate { epoch: 1, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("2 batches refused as non-finite"),
        "{err}"
    );
}

/// Every controlled solve diverged (a divergence bound below the states' size): nothing
/// was learnt, so the run ends with an error giving the reason counts, not a summary.
#[test]
fn epoch_in_which_every_sample_diverged_is_an_error_with_reasons() {
    let err = run(&xor(&["solver.divergence_bound=1e-6"]));
    let msg = err.to_string();
    assert!(
        matches!(&err, LcsimError::NoUpdate { epoch: 1, .. }),
        "{msg}"
    );
    assert!(msg.contains("32 of 32 samples left out"), "{msg}");
    assert!(msg.contains("diverged 32"), "{msg}");
}

fn finished(dir: &Path) -> Vec<String> {
    let runs = dir.join("runs");
    let Ok(entries) = std::fs::read_dir(&runs) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("summary.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// From the command line: a diverged run and a non-finite run exit non-zero with a
/// one-line error, and neither folder holds a summary.json (finished) or a params.npz.
#[test]
fn cli_runs_that_learnt_nothing_are_not_marked_finished() {
    let dir = tempfile::tempdir().unwrap();
    for (set, says) in [
        (
            "solver.divergence_bound=1e-6",
            "no sample produced an update",
        ),
        ("training.weight_decay=1e199", "non-finite second moment"),
    ] {
        let mut args = vec!["train", "--quiet"];
        args.extend(TINY);
        args.extend(["--set", set]);
        let o = lcsim_in(dir.path(), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{set} must fail");
        assert!(
            err.contains(says) && err.lines().count() == 1,
            "{set}: {err}"
        );
        assert!(finished(dir.path()).is_empty(), "{set} looks finished");
    }
    for run in std::fs::read_dir(dir.path().join("runs")).unwrap() {
        assert!(!run.unwrap().path().join("params.npz").exists());
    }
}

/// Forward Euler multiplies the controller's leak by `1 - dt alpha / tau_u` per step, so
/// `dt alpha / tau_u >= 2` diverges in every controlled solve: refused up front naming
/// controller.alpha and the bound; just below the bound is accepted, and so is any alpha
/// with a solver that is not Euler.
#[test]
fn euler_unstable_for_the_controller_leak_is_refused_up_front() {
    let load = |sets: &[&str]| {
        let s: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::load(None, &s)
    };
    let euler = ["solver.method=\"euler\"", "solver.dt=1.0"];
    let err = load(&[&euler[..], &["controller.alpha=10.0"]].concat())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("controller.alpha") && err.contains("alpha < 2.0000"),
        "{err}"
    );
    let err = load(&[&euler[..], &["controller.alpha=1.0", "dynamics.tau_u=0.5"]].concat())
        .unwrap_err()
        .to_string();
    assert!(err.contains("dynamics.tau_u = 0.5"), "{err}");
    load(&[&euler[..], &["controller.alpha=1.99"]].concat()).unwrap();
    load(&["solver.method=\"anderson\"", "controller.alpha=10.0"]).unwrap();
    load(
        &[
            &euler[..],
            &["controller.alpha=10.0", "method.name=\"rbp\""],
        ]
        .concat(),
    )
    .unwrap();

    // The bound is the real one: the controller's leak alone (k_i = 0, so u_i only decays)
    // started at u_i = 1 under Euler grows as |1 - dt alpha / tau_u|^n.
    let leak = |ratio: f64, n: usize| (0..n).fold(1.0_f64, |u, _| u - ratio * u);
    assert!(leak(1.99, 2000).abs() < 1e-3);
    assert!(leak(2.01, 2000).abs() > 1e3);

    // From the command line: refused before a run folder exists.
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["train", "--quiet"];
    args.extend(TINY);
    args.extend([
        "--set",
        "solver.method=\"euler\"",
        "--set",
        "controller.alpha=10",
    ]);
    let o = lcsim_in(dir.path(), &args);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("controller.alpha"));
    assert!(!dir.path().join("runs").exists());
}

/// An MNIST folder: train (n_train images of `train` shape) and test (n_test of `test`).
fn mnist_dir(dir: &Path, (n_train, train): (u32, [u32; 2]), (n_test, test): (u32, [u32; 2])) {
    for (prefix, n, [r, c]) in [("train", n_train, train), ("t10k", n_test, test)] {
        let pixels = vec![7u8; (n * r * c) as usize];
        let images = idx_bytes(0x0803, &[n, r, c], &pixels);
        let labels = idx_bytes(0x0801, &[n], &vec![1u8; n as usize]);
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
}

/// Empty train or test files, and test images of another shape with the same pixel count
/// (14 x 56 beside 28 x 28), are refused at load, naming the file and the shapes.
#[test]
fn mnist_empty_splits_and_other_image_shapes_are_refused_at_load() {
    for (train, test, says) in [
        ((0, [28, 28]), (3, [28, 28]), "train-images"),
        ((3, [28, 28]), (0, [28, 28]), "t10k-images"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        mnist_dir(dir.path(), train, test);
        let msg = lcsim::data::mnist(dir.path(), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(says) && msg.contains("found 0 images"),
            "{msg}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    mnist_dir(dir.path(), (3, [28, 28]), (3, [14, 56]));
    let msg = lcsim::data::mnist(dir.path(), None, None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("28 x 28") && msg.contains("found 14 x 56"),
        "{msg}"
    );
    // Same shapes load.
    let dir = tempfile::tempdir().unwrap();
    mnist_dir(dir.path(), (3, [28, 28]), (2, [28, 28]));
    let s = lcsim::data::mnist(dir.path(), None, None).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (3, 2));
    // A file given as the directory says so.
    let file = dir.path().join("train-images-idx3-ubyte");
    let msg = lcsim::data::mnist(&file, None, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("is a file, not a directory"), "{msg}");
}

/// `on_unconverged = "stop"` names the limit that was hit: max_iterations for an
/// accelerated solver, max_steps for Euler, LCP-EBD's ebd.steps, and does not call "stop" an
/// invalid value.
#[test]
fn stop_on_unconverged_names_the_limit_that_was_hit() {
    for (solver, method, limit, other) in [
        (
            "anderson",
            "lcp-di",
            "solver.max_iterations",
            "solver.max_steps",
        ),
        (
            "euler",
            "lcp-di",
            "solver.max_steps",
            "solver.max_iterations",
        ),
        ("anderson", "lcp-ebd", "ebd.steps", "solver.max_"),
    ] {
        let mut sets = vec![
            format!("solver.method=\"{solver}\""),
            format!("method.name=\"{method}\""),
            "solver.max_iterations=1".into(),
            "solver.max_steps=1".into(),
            "method.on_unconverged=\"stop\"".into(),
        ];
        if method == "lcp-ebd" {
            // Adam on the state for one step; the free solve gets its usual cap.
            sets.extend([
                "ebd.descent=\"adam\"".into(),
                "ebd.steps=1".into(),
                "solver.max_iterations=100".into(),
            ]);
        }
        let c = xor(&sets.iter().map(String::as_str).collect::<Vec<_>>());
        let err = run(&c);
        let msg = err.to_string();
        assert!(matches!(err, LcsimError::Unconverged { .. }), "{msg}");
        assert!(
            msg.contains(limit) && !msg.contains(other),
            "{solver} {method}: {msg}"
        );
        assert!(!msg.contains("invalid value"), "{msg}");
    }
}

struct Warnings(Vec<String>);
impl Observer for Warnings {
    fn on_warning(&mut self, message: &str) {
        self.0.push(message.to_string());
    }
}

/// An epoch whose update solves mostly did not converge (two Euler steps; the states are
/// still used) trains, but warns with the reason counted; a converging one does not warn.
#[test]
fn mostly_unconverged_epoch_warns_with_reasons() {
    let warnings = |sets: &[&str]| {
        let c = xor(sets);
        let data = load_split(&c).unwrap();
        let batches = data.train.len().div_ceil(c.training.batch_size);
        let state =
            TrainingState::new(&c, data.train.n_inputs(), data.train.n_classes, batches).unwrap();
        let mut w = Warnings(Vec::new());
        train(&c, &data, state, &mut w, &AtomicBool::new(false)).unwrap();
        w.0
    };
    let w = warnings(&["solver.method=\"euler\"", "solver.max_steps=2"]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("epoch 1: 100.0%") && w[0].contains("max-steps 32"),
        "{w:?}"
    );
    assert!(warnings(&[]).is_empty());
}

/// The memory estimate counts the parameters of a layered 2 -> [3] -> 2 net by hand
/// (2*3 + 3 + 3*2 + 2 = 17, seven copies) plus data and solver histories; sizes that would
/// exhaust memory are refused from the command line before a run folder exists.
#[test]
fn sizes_that_would_exhaust_memory_are_refused_up_front() {
    let c = xor(&[
        "model.kind=\"ff\"",
        "model.hidden=[3]",
        "method.name=\"bp\"",
        "data.synthetic_samples=10",
        "training.batch_size=1",
        "solver.anderson_memory=1",
        "solver.stability_dim=1",
    ]);
    let by_hand = 8.0 * (7.0 * 17.0 + 10.0 * 4.0 + 6.0 * 3.0 * (3.0 + 2.0));
    assert_eq!(c.memory_estimate(), by_hand);
    c.check_resources().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for set in [
        "model.hidden=[100000]",
        "solver.anderson_memory=1000000000",
        "data.synthetic_samples=1000000000000",
    ] {
        let mut args = vec!["train", "--quiet"];
        args.extend(TINY);
        args.extend(["--set", set]);
        let o = lcsim_in(dir.path(), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{set}");
        assert!(
            err.contains("GiB of memory") && err.lines().count() == 1,
            "{set}: {err}"
        );
        assert!(!dir.path().join("runs").exists(), "{set} left a run folder");
    }
}

/// `output.name = "../../x"` wrote the run folder outside `output.dir`; names must stay inside.
#[test]
fn run_name_confined_to_output_dir() {
    for bad in ["../../x", "..", ".", "a/b", "a\\b"] {
        let mut c = Config::default();
        c.output.name = bad.to_string();
        let err = c.validate().expect_err(bad).to_string();
        assert!(err.contains("output.name"), "{bad}: {err}");
    }
    let mut c = Config::default();
    c.output.name = "my-run_1".to_string();
    c.validate().expect("a plain name is accepted");
    // From the command line: refused in one line, and no (empty) runs/ is left.
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["train", "--quiet"];
    args.extend(TINY);
    args.extend(["--set", "output.name=\"../../x\""]);
    let o = lcsim_in(dir.path(), &args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("output.name") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("runs").exists());
    assert!(!dir.path().join("x").exists() && !dir.path().join("../x").exists());
}

/// One training run from the command line in `dir` (folder `runs/NAME`): its metrics.csv
/// rows and its epoch lines.
fn run_with_reasons(
    dir: &Path,
    name: &str,
    sets: &[&str],
) -> (Vec<lcsim::io::metrics::EpochMetrics>, Vec<String>) {
    let mut args = vec!["train", "--quiet", "--set", "output.figures=false"];
    let out = format!("output.name=\"{name}\"");
    args.extend(["--set", &out]);
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = lcsim_in(dir, &args);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{name}: {stdout}\n{}",
        common::stderr(&o)
    );
    let rows = lcsim::io::metrics::read_csv(&dir.join("runs").join(name).join("metrics.csv"));
    let lines = stdout.lines().filter(|l| l.starts_with("epoch "));
    (rows.unwrap(), lines.map(str::to_string).collect())
}

/// Unconverged solves are counted by reason in metrics.csv's `unconverged_*` columns and in
/// the epoch line, for the rate net, the conv net and meta-learning: an iteration cap of 1
/// without a fallback (every update solve `max-iterations`; imaml's CG alike), Euler's
/// `max_steps` and `max_time`, and a divergence bound some samples' states pass (each
/// diverged sample is one left out of the update, counted independently in
/// `skipped_samples`). The counts add up to `fraction_unconverged` of the solves, `free`
/// to `fraction_free_unconverged`; a run whose solves converge shows none.
#[test]
fn unconverged_solves_are_counted_by_reason_in_metrics_csv_and_the_epoch_line() {
    let dir = tempfile::tempdir().unwrap();
    let xor = [
        "data.source=\"xor\"",
        "data.synthetic_samples=40",
        "model.hidden=[4]",
    ];
    let conv = [
        "model.kind=\"conv\"",
        "data.source=\"digits\"",
        "data.train_limit=48",
        "data.test_limit=16",
        "conv.layers=[{kind=\"conv\",channels=2,kernel=3,pad=1,pool=\"avg\"},{kind=\"dense\",units=8}]",
    ];
    let meta = [
        "model.kind=\"meta\"",
        "model.hidden=[8]",
        "data.source=\"sinusoid\"",
        "method.name=\"imaml\"",
        "solver.method=\"newton-krylov\"",
        "training.batch_size=10",
        "meta.train_tasks=20",
        "meta.test_tasks=10",
        "meta.cg_max_iterations=1",
    ];
    let capped = ["solver.max_iterations=1", "solver.fallback=\"none\""];
    let euler = "solver.method=\"euler\"";
    // (name, settings, update solves per epoch, the reason and its count per epoch: None =
    // as many as samples left out of the update).
    type Case<'a> = (&'a str, Vec<&'a str>, usize, &'a str, Option<usize>);
    let cases: Vec<Case> = vec![
        (
            "rate-iterations",
            [&xor[..], &capped].concat(),
            32,
            "max-iterations",
            Some(32),
        ),
        (
            "rate-steps",
            [&xor[..], &[euler, "solver.max_steps=2"]].concat(),
            32,
            "max-steps",
            Some(32),
        ),
        (
            "rate-time",
            [&xor[..], &[euler, "solver.dt=1.9"]].concat(),
            32,
            "max-time",
            Some(32),
        ),
        (
            "rate-diverged",
            [&xor[..], &["solver.divergence_bound=1"]].concat(),
            32,
            "diverged",
            None,
        ),
        ("rate-converged", xor.to_vec(), 32, "", Some(0)),
        (
            "conv-iterations",
            [&conv[..], &capped].concat(),
            48,
            "max-iterations",
            Some(48),
        ),
        ("meta-cg", meta.to_vec(), 20, "max-iterations", Some(20)),
    ];
    for (name, mut sets, solves, reason, count) in cases {
        sets.extend(["training.epochs=2", "training.diagnostics_samples=0"]);
        let (rows, lines) = run_with_reasons(dir.path(), name, &sets);
        assert_eq!((rows.len(), lines.len()), (2, 2), "{name}: {lines:?}");
        for (m, line) in rows.iter().zip(&lines) {
            let u = m.unconverged.expect("the reasons are recorded");
            let counts = u.update_counts();
            let total: usize = counts.iter().map(|c| c.1).sum();
            let of = |fraction: f64| (fraction * solves as f64).round() as usize;
            assert_eq!(total, of(m.fraction_unconverged), "{name}: {u:?}");
            assert_eq!(u.free, of(m.fraction_free_unconverged), "{name}: {u:?}");
            let expected = count.unwrap_or(m.skipped_samples);
            for (r, n) in counts {
                let want = if r == reason { expected } else { 0 };
                assert_eq!(n, want, "{name}: {r} in {u:?}");
            }
            if reason == "diverged" {
                assert!(0 < expected && expected < solves, "{name}: {u:?}");
            }
            let percent = format!("unconverged {:.1}%", 100.0 * m.fraction_unconverged);
            if u == Default::default() {
                assert!(line.contains(&format!("{percent} | ")), "{name}: {line}");
            } else {
                let text = format!("{percent} ({}) | ", u.summary());
                assert!(line.contains(&text), "{name}: {line}");
                assert!(
                    line.contains(&format!("{reason} {expected}")),
                    "{name}: {line}"
                );
            }
        }
    }
}
