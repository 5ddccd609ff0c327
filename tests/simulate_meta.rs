//! `lcsim simulate` on a meta-learning run (spec 7.1, issue 14 item 6): the inner fine-tuning
//! flow of chosen tasks, free and then controlled; its folder, the inner and query losses, and
//! the free segment's end against the free equilibrium found independently.

mod common;

use common::{lcsim_in, stderr};
use lcsim::config::Config;
use lcsim::control::{free_equilibrium, CoupledSystem};
use lcsim::io::npz::read_npy;
use lcsim::studies::simulate::{simulation_objective, SimulationSettings, SplitChoice};
use lcsim::studies::simulate_meta::{simulate_meta_tasks, sinusoid_curves};
use lcsim::train::load_split;
use lcsim::train::meta::meta_system;

/// A small meta-learning config: learner 1-8-1, 40 training tasks in meta-batches of 10.
fn meta_config() -> Config {
    let sets = [
        "model.kind=\"meta\"",
        "model.hidden=[8]",
        "data.source=\"sinusoid\"",
        "method.name=\"lcp-di\"",
        "controller.alpha=1.0",
        "solver.method=\"newton-krylov\"",
        "solver.chunk=1",
        "solver.atol=1e-8",
        "solver.rtol=1e-8",
        "training.learning_rate=0.01",
        "training.schedule=\"constant\"",
        "training.epochs=1",
        "training.batch_size=10",
        "training.diagnostics_samples=0",
        "meta.lambda=5.0",
        "meta.support=10",
        "meta.query=8",
        "meta.train_tasks=40",
        "meta.test_tasks=30",
    ];
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Config::load(None, &sets).unwrap()
}

fn plane(dir: &std::path::Path, name: &str) -> (Vec<usize>, Vec<f64>) {
    let a = read_npy(&dir.join(format!("{name}.npy"))).unwrap();
    (a.shape, a.data)
}

#[test]
fn the_cli_simulates_a_trained_meta_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.toml");
    let mut config = meta_config();
    config.output.dir = dir.path().join("runs");
    config.output.name = "cli".into();
    std::fs::write(&path, config.to_toml()).unwrap();
    let train = lcsim_in(
        dir.path(),
        &["train", "--config", path.to_str().unwrap(), "--quiet"],
    );
    assert!(train.status.success(), "{}", stderr(&train));
    let args = [
        "simulate",
        "--run",
        "runs/cli",
        "--samples",
        "0,2",
        "--t-on",
        "10",
        "--t-end",
        "40",
        "--points",
        "101",
    ];
    let o = lcsim_in(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("meta-learning") && stdout.contains("task 2:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("runs/cli/params.npz (finished run)"),
        "{stdout}"
    );
    let out = dir.path().join("runs/simulate-cli");
    for f in [
        "config.toml",
        "times.npy",
        "tasks.npy",
        "phi.npy",
        "psi.npy",
        "trajectories.csv",
        "figures/task-0.png",
        "figures/task-2.png",
    ] {
        assert!(out.join(f).is_file(), "{f}: {stdout}");
    }
    assert!(
        !out.join("v.npy").exists(),
        "the rate net's layout is not written"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("simulate.json")).unwrap()).unwrap();
    assert_eq!(json["system"], "meta", "{json}");
    assert_eq!(json["samples_are"], "tasks", "{json}");
    assert_eq!(json["loss"], "query-mse", "{json}");
    assert_eq!(json["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(json["tasks"][1]["task"], 2);

    let n_t = read_npy(&out.join("times.npy")).unwrap().data.len();
    let n = config.learner().unwrap().num_params();
    assert_eq!(
        read_npy(&out.join("phi.npy")).unwrap().shape,
        vec![2, n_t, n]
    );
    let (shape, inner) = plane(&out, "inner_loss");
    let (_, query) = plane(&out, "query_loss");
    assert_eq!(shape, vec![2, n_t]);
    assert!(inner.iter().all(|v| v.is_finite()), "{inner:?}");
    let k_on = json["switch_index"].as_u64().unwrap() as usize;
    for j in 0..2 {
        let at = |v: &[f64], k: usize| v[j * n_t + k];
        // The free flow fine-tunes on the support set ...
        assert!(at(&inner, k_on) < at(&inner, 0), "task {j}: {inner:?}");
        // ... and the controller lowers the query loss.
        assert!(
            at(&query, n_t - 1) < at(&query, k_on),
            "task {j}: {query:?}"
        );
        let task = &json["tasks"][j];
        for segment in ["free", "controlled"] {
            let residual = task[segment]["residual"].as_f64().unwrap();
            assert!(residual < 1e-6, "{segment}: {task}");
        }
        let q = task["query_loss_at_t_end"].as_f64().unwrap();
        assert!((q - at(&query, n_t - 1)).abs() <= 1e-12 * q.abs());
    }
    let csv = std::fs::read_to_string(out.join("trajectories.csv")).unwrap();
    assert!(csv.starts_with("task,time,phase,query_loss,inner_loss,psi_norm,u_norm,phi_shift\n"));
    assert_eq!(csv.lines().count(), 1 + 2 * n_t);

    // The run's params.npz through --params is the same theta; a file without theta is refused.
    let mut by_params = args.to_vec();
    by_params.splice(
        1..3,
        ["--config", "meta.toml", "--params", "runs/cli/params.npz"],
    );
    by_params.extend(["--name", "p"]);
    let p = lcsim_in(dir.path(), &by_params);
    assert!(p.status.success(), "{}", stderr(&p));
    assert_eq!(
        plane(&dir.path().join("runs/simulate-p"), "query_loss"),
        plane(&out, "query_loss")
    );
    let rate = lcsim::system::rate::RateNetwork::new(
        2,
        lcsim::system::rate::Topology::Layered { layers: vec![3] },
        2,
        lcsim::numerics::activation::Activation::Tanh,
        0,
    )
    .unwrap();
    lcsim::io::interop::save_params(&dir.path().join("rate.npz"), &rate).unwrap();
    by_params[4] = "rate.npz";
    *by_params.last_mut().unwrap() = "q";
    let bad = lcsim_in(dir.path(), &by_params);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("theta"), "{}", stderr(&bad));
    assert!(!dir.path().join("runs/simulate-q").exists());
}

#[test]
fn the_free_segment_ends_at_the_free_equilibrium() {
    let config = meta_config();
    let net = meta_system(&config).unwrap();
    let data = load_split(&config).unwrap();
    let settings = SimulationSettings {
        split: SplitChoice::Test,
        samples: vec![1, 4, 7],
        t_on: 20.0,
        t_end: 24.0,
        points: 61,
        hidden_units: 8,
        units: Vec::new(),
    };
    let msim = simulate_meta_tasks(&config, &net, &data.test, &settings).unwrap();
    let sim = &msim.sim;
    // Independently: the free equilibrium by Newton-Krylov on the free system of the tasks.
    let (x, targets) = data.test.batch(&settings.samples);
    let free = CoupledSystem::new(
        &net,
        x,
        targets,
        simulation_objective(&config),
        config.dynamics.tau_v,
        None,
    )
    .unwrap();
    let (phi0, record) = free_equilibrium(&free, &config.solver);
    assert!(record.is_some(), "the meta system has no closed form");
    for (j, tr) in sim.trajectories.iter().enumerate() {
        let at_on = tr.y.column(sim.switch_index);
        let diff = (at_on - phi0.column(j)).amax();
        assert!(
            diff <= 1e-6 * (1.0 + phi0.column(j).amax()),
            "task {j}: |phi(t_on) - phi0| = {diff:.2e}"
        );
        // The controller is at rest until t_on and the inner loss recorded is L_in(phi).
        assert!(tr.psi_norm[..sim.switch_index].iter().all(|&v| v == 0.0));
        let inner_at_on = net.inner_losses(
            &phi0.columns(j, 1).into_owned(),
            &data
                .test
                .inputs
                .columns(settings.samples[j], 1)
                .into_owned(),
        )[0];
        let recorded = msim.inner_loss[j][sim.switch_index];
        assert!(
            (recorded - inner_at_on).abs() <= 1e-6 * inner_at_on,
            "{recorded} vs {inner_at_on}"
        );
        assert!(msim.phi_shift[j][0] == 0.0, "phi(0) = theta");
    }
    // The true curves are found for the meta-test tasks (their support points lie on them).
    let curves = sinusoid_curves(&config, SplitChoice::Test, &data.test, &settings.samples)
        .expect("the meta-test tasks are redrawn from their seed");
    let learner = net.learner();
    for (j, c) in curves.iter().enumerate() {
        let (xs, ys) = lcsim::system::meta::split_points(learner, msim.support[j].as_slice());
        for (x, y) in xs.iter().zip(ys.iter()) {
            assert!((c.at(*x) - y).abs() < 1e-12);
        }
    }
    // The training pool's tasks are not the meta-test tasks.
    assert!(sinusoid_curves(&config, SplitChoice::Train, &data.test, &settings.samples).is_none());
}
