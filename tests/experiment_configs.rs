//! The configs in `experiments/`: each one loads and passes validation, and
//! `lcp-di-rnn-fast.toml` is the reference's `lcp-di-rnn.toml` with only its speed settings
//! changed (the controller's time constant, which moves no steady state, and the chunk).

use lcsim::config::{changed_keys, Config};
use std::path::{Path, PathBuf};

fn experiments() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments")
}

fn load(name: &str) -> Config {
    let path = experiments().join(name);
    Config::load(Some(&path), &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_experiment_config_loads() {
    let mut names: Vec<String> = std::fs::read_dir(experiments())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "{names:?}");
    for name in &names {
        load(name);
    }
}

#[test]
fn the_fast_lcp_di_config_changes_only_the_controllers_time_constant_and_the_chunk() {
    let (reference, fast) = (load("lcp-di-rnn.toml"), load("lcp-di-rnn-fast.toml"));
    let mut changed: Vec<String> = changed_keys(&reference.flat(), &fast.flat())
        .into_iter()
        .map(|(key, _, _)| key)
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        ["dynamics.tau_u", "output.name", "solver.chunk"],
        "{changed:?}"
    );
    // tau_u = alpha: the leak of the integral controller settles in one Euler step of dt.
    assert_eq!(fast.dynamics.tau_u, fast.controller.alpha);
    assert_eq!(fast.solver.euler.dt, 1.0);
}
