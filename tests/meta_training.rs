//! Meta-learning runs (spec 7.1) end to end: the sinusoid tasks, the `[meta]` config and its
//! errors, meta-training by LCP-DI and the baselines through the training loop (the
//! meta-test improves on fine-tuning from the initial theta), resume, and the CLI's run
//! folder with `meta_test` in summary.json.

mod common;

use common::{lcsim_in, stderr};
use lcsim::config::{Config, MetaConfig};
use lcsim::run::RunDir;
use lcsim::system::meta::{split_points, MetaSystem};
use lcsim::tasks::{sinusoid_split, sinusoid_tasks};
use lcsim::train::meta::{meta_test, MetaTest};
use lcsim::train::{load_split, train, Observer, Outcome, TrainingState};
use std::sync::atomic::AtomicBool;

/// A small meta-learning config: learner 1-8-1, 40 training tasks in meta-batches of 10.
fn meta_config(method: &str, epochs: usize) -> Config {
    let sets = [
        "model.kind=\"meta\"".to_string(),
        "model.hidden=[8]".into(),
        "data.source=\"sinusoid\"".into(),
        format!("method.name=\"{method}\""),
        "controller.alpha=1.0".into(),
        "solver.method=\"newton-krylov\"".into(),
        "solver.chunk=1".into(),
        "solver.atol=1e-8".into(),
        "solver.rtol=1e-8".into(),
        "training.learning_rate=0.01".into(),
        "training.schedule=\"constant\"".into(),
        format!("training.epochs={epochs}"),
        "training.batch_size=10".into(),
        "training.diagnostics_samples=0".into(),
        "meta.lambda=5.0".into(),
        "meta.support=10".into(),
        "meta.query=8".into(),
        "meta.train_tasks=40".into(),
        "meta.test_tasks=30".into(),
    ];
    Config::load(None, &sets).unwrap()
}

struct Quiet;
impl Observer<MetaSystem> for Quiet {}

fn trained(config: &Config) -> (TrainingState<MetaSystem>, MetaTest) {
    let data = load_split(config).unwrap();
    let batches = data.train.len().div_ceil(config.training.batch_size);
    let state = TrainingState::new_meta(config, batches).unwrap();
    let stop = AtomicBool::new(false);
    let (state, outcome) = train(config, &data, state, &mut Quiet, &stop).unwrap();
    assert_eq!(outcome, Outcome::Completed);
    let test = meta_test(config, &state.net, &data.test, &stop)
        .unwrap()
        .unwrap();
    (state, test)
}

#[test]
fn sinusoid_tasks_are_seeded_sinusoids_in_their_ranges() {
    let meta = MetaConfig {
        support: 4,
        query: 6,
        ..MetaConfig::default()
    };
    let (d, curves) = sinusoid_tasks(&meta, 20, 7).unwrap();
    let (again, _) = sinusoid_tasks(&meta, 20, 7).unwrap();
    assert_eq!(d, again);
    let (other, _) = sinusoid_tasks(&meta, 20, 8).unwrap();
    assert_ne!(d.inputs, other.inputs);
    let learner = lcsim::system::learner::Mlp::new(vec![1, 3, 1]).unwrap();
    let targets = d.targets.as_ref().unwrap();
    assert_eq!((d.inputs.nrows(), targets.nrows()), (8, 12));
    for (j, c) in curves.iter().enumerate() {
        assert!(
            (0.1..=5.0).contains(&c.amplitude) && (0.0..=std::f64::consts::PI).contains(&c.phase)
        );
        for col in [d.inputs.column(j), targets.column(j)] {
            let (x, y) = split_points(&learner, col.as_slice());
            for (xv, yv) in x.iter().zip(y.iter()) {
                assert!((-5.0..=5.0).contains(xv));
                assert!((yv - c.amplitude * (xv + c.phase).sin()).abs() < 1e-12);
            }
        }
    }
    // The meta-test tasks are new ones.
    let split = sinusoid_split(&meta, 7).unwrap();
    assert_eq!(split.train.inputs.columns(0, 10), d.inputs.columns(0, 10));
    assert_ne!(split.test.inputs.column(0), split.train.inputs.column(0));
}

#[test]
fn bad_meta_configs_name_the_key() {
    let err = |sets: &[&str]| -> String {
        let mut all = vec![
            "model.kind=\"meta\"",
            "data.source=\"sinusoid\"",
            "model.hidden=[8]",
        ];
        all.extend_from_slice(sets);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        Config::load(None, &all).unwrap_err().to_string()
    };
    assert!(err(&["meta.lambda=0.0"]).contains("meta.lambda"));
    assert!(err(&["meta.lambda=-1.0"]).contains("meta.lambda"));
    assert!(err(&["meta.support=0"]).contains("meta.support"));
    assert!(err(&["meta.amplitude=[5.0, 0.1]"]).contains("meta.amplitude"));
    assert!(err(&["method.name=\"lcp-kp\""]).contains("method.name"));
    assert!(err(&["method.name=\"bp\""]).contains("method.name"));
    assert!(err(&["data.source=\"digits\""]).contains("data.source"));
    let plain = |sets: &[&str]| {
        let all: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::load(None, &all).unwrap_err().to_string()
    };
    assert!(plain(&["method.name=\"imaml\""]).contains("method.name"));
    assert!(plain(&["data.source=\"sinusoid\""]).contains("data.source"));
    assert!(plain(&["meta.lambda=2.0"]).contains("[meta]"));
}

#[test]
fn meta_training_beats_fine_tuning_from_the_initial_theta() {
    for method in ["lcp-di", "lcp-ebd", "imaml", "fomaml"] {
        let config = meta_config(method, 3);
        let (state, test) = trained(&config);
        assert_eq!(state.history.len(), 3);
        assert_eq!(test.tasks, 30);
        assert!(
            test.unconverged_tasks * 10 <= test.tasks,
            "{method}: {test:?}"
        );
        assert!(
            test.query_loss < test.initial_theta_query_loss,
            "{method}: meta-test MSE {} vs {} from the initial theta",
            test.query_loss,
            test.initial_theta_query_loss
        );
        // The fine-tuning helps on new tasks: the adapted loss is below theta's own.
        assert!(
            test.query_loss < test.query_loss_before_adaptation,
            "{method}: {test:?}"
        );
        assert!(test.query_loss_ci95 > 0.0 && test.query_loss_ci95.is_finite());
        if method == "lcp-di" {
            assert!(state.history.iter().all(|m| m.mean_h > 0.0));
        }
    }
}

#[test]
fn implicit_maml_and_the_adjoint_rbp_train_the_same_theta() {
    // Both compute the exact implicit meta-gradient (CG on Hessian-vector products, and the
    // adjoint steady state): the trained theta agrees to the solvers' tolerance.
    let (a, _) = trained(&meta_config("imaml", 1));
    let (b, _) = trained(&meta_config("rbp", 1));
    let (ta, tb) = (a.net.theta(), b.net.theta());
    let diff = (ta - tb).amax();
    assert!(diff < 1e-6, "theta differs by {diff}");
    let (c, _) = trained(&meta_config("fomaml", 1));
    assert!((ta - c.net.theta()).amax() > 1e-6);
}

#[test]
fn lcp_ebd_and_lcp_di_train_the_same_theta() {
    // Both take psi* at the minimiser of E_alpha = 1/2 |f|^2 + beta L_out (spec 2.1, 3.4).
    let (di, _) = trained(&meta_config("lcp-di", 1));
    let (ebd, _) = trained(&meta_config("lcp-ebd", 1));
    let diff = (di.net.theta() - ebd.net.theta()).amax();
    assert!(diff < 1e-6, "theta differs by {diff}");
}

#[test]
fn a_meta_run_resumed_from_its_checkpoint_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = meta_config("lcp-di", 2);
    config.output.dir = dir.path().to_path_buf();
    let (straight, _) = trained(&config);
    // One epoch, checkpointed, loaded into a fresh state and trained on to two.
    let mut first = config.clone();
    first.training.epochs = 1;
    let (one, _) = trained(&first);
    let (run, _lock) = RunDir::create(&config, "test", None).unwrap();
    run.save_epoch(&one).unwrap();
    let data = load_split(&config).unwrap();
    let fresh = TrainingState::new_meta(&config, 4).unwrap();
    let loaded = run.load_checkpoint(fresh).unwrap();
    assert_eq!(loaded.epochs_done(), 1);
    assert_eq!(loaded.net.theta(), one.net.theta());
    let stop = AtomicBool::new(false);
    let (resumed, _) = train(&config, &data, loaded, &mut Quiet, &stop).unwrap();
    assert_eq!(resumed.net.theta(), straight.net.theta());
}

#[test]
fn the_cli_trains_a_meta_run_and_writes_the_meta_test() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.toml");
    let mut config = meta_config("imaml", 1);
    config.output.dir = dir.path().join("runs");
    config.output.name = "cli".into();
    std::fs::write(&path, config.to_toml()).unwrap();
    let out = lcsim_in(
        dir.path(),
        &["train", "--config", path.to_str().unwrap(), "--quiet"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("runs/cli/summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let test = &summary["meta_test"];
    assert_eq!(test["tasks"], 30, "{summary}");
    for key in [
        "query_loss",
        "query_loss_ci95",
        "query_loss_before_adaptation",
        "initial_theta_query_loss",
    ] {
        assert!(
            test[key].as_f64().is_some_and(|v| v > 0.0),
            "{key}: {summary}"
        );
    }
    let params = lcsim::io::npz::read_npz(&dir.path().join("runs/cli/params.npz")).unwrap();
    assert_eq!(
        params["theta"].data.len(),
        config.learner().unwrap().num_params()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("meta-test MSE"), "{stdout}");
    let fits = dir.path().join("runs/cli/figures/adapted_fits.png");
    assert!(fits.is_file(), "{stdout}");
    std::fs::remove_file(&fits).unwrap();
    // `lcsim plot` redraws it from params.npz.
    let run = dir.path().join("runs/cli");
    let plot = lcsim_in(dir.path(), &["plot", run.to_str().unwrap()]);
    assert!(plot.status.success(), "{}", stderr(&plot));
    assert!(fits.is_file());
}
