//! `lcsim simulate`: the free relaxation, the controller switched on at t_on, the recorded
//! time course against equilibria and an independent integrator, bad settings, the folder
//! it writes and the command line.

mod common;

use common::{lcsim_in, max_abs_diff, rnn, stderr, TINY};
use lcsim::config::Config;
use lcsim::control::relax;
use lcsim::control::CoupledSystem;
use lcsim::data::Dataset;
use lcsim::io::interop::save_params;
use lcsim::io::npz::read_npy;
use lcsim::numerics::activation::Activation;
use lcsim::solve::{solve_batch, SolverMethod, SolverSettings, Termination};
use lcsim::studies::simulate::{
    simulate_dataset_samples, simulate_switch_on, simulation_objective, SampleTrajectory,
    SimulationSettings, SplitChoice,
};
use lcsim::studies::simulate_write::{write_simulation, Provenance};
use lcsim::system::rate::{RateNetwork, Topology};
use lcsim::system::EquilibriumSystem;
use lcsim::system::KolenPollack;
use nalgebra::DMatrix;
use std::path::Path;

fn net(seed: u64) -> RateNetwork {
    rnn(4, 6, 3, Activation::Tanh, seed)
}

fn data() -> Dataset {
    let x = DMatrix::from_fn(4, 5, |i, j| ((i * 5 + j) as f64 * 0.37).sin());
    Dataset::new(x, vec![0, 2, 1, 2, 0], 3, "toy").unwrap()
}

/// Strong control (per-sample loss scale 1) and tight solver tolerances.
fn config(method: SolverMethod) -> Config {
    let mut c = Config::default();
    c.training.batch_size = 1;
    c.solver = {
        let mut o = SolverSettings {
            method,
            ..SolverSettings::default()
        };
        o.stop.atol = 1e-9;
        o.stop.rtol = 0.0;
        o.adaptive.rtol = 1e-10;
        o.adaptive.atol = 1e-12;
        o.euler.dt = 1e-3;
        o.stop.max_steps = 10_000_000;
        o
    };
    c
}

fn settings(samples: &[usize], t_on: f64, t_end: f64, points: usize) -> SimulationSettings {
    SimulationSettings {
        split: SplitChoice::Test,
        samples: samples.to_vec(),
        t_on,
        t_end,
        points,
        hidden_units: 8,
        units: Vec::new(),
    }
}

/// The full state (v, y, u_i, e) of a trajectory at time index k.
fn state_at(tr: &SampleTrajectory, k: usize) -> DMatrix<f64> {
    let parts = [&tr.v, &tr.y, &tr.u_i, &tr.e];
    let values: Vec<f64> = parts
        .iter()
        .flat_map(|m| m.column(k).iter().copied().collect::<Vec<_>>())
        .collect();
    DMatrix::from_column_slice(values.len(), 1, &values)
}

#[test]
fn output_times_hold_t_on_and_end_at_t_end() {
    let on_grid = settings(&[0], 50.0, 150.0, 301).output_times();
    assert_eq!(on_grid.len(), 301);
    assert_eq!(on_grid[100], 50.0);
    assert_eq!(on_grid[300], 150.0);
    let off_grid = settings(&[0], 37.3, 100.0, 11).output_times();
    assert_eq!(off_grid.len(), 12);
    assert_eq!(off_grid[4], 37.3);
    assert_eq!((off_grid[3], off_grid[5]), (30.0, 40.0));
    assert_eq!(*off_grid.last().unwrap(), 100.0);
    let tiny = settings(&[0], 1e-12, 3.0, 4).output_times();
    assert_eq!(tiny, vec![0.0, 1e-12, 1.0, 2.0, 3.0]);
    let zero = settings(&[0], 0.0, 3.0, 4).output_times();
    assert_eq!(zero, vec![0.0, 1.0, 2.0, 3.0]);
}

/// (a) The last controlled point is the controlled equilibrium reached from the free
/// equilibrium with the controller at rest, and the point at t_on is the free equilibrium.
#[test]
fn segments_end_at_the_free_and_the_controlled_equilibria() {
    let net = net(3);
    let data = data();
    let config = config(SolverMethod::Tsit45);
    // t_on off the grid: the switch state is inserted at t_on.
    let s = settings(&[0, 2, 3], 60.3, 600.0, 41);
    let sim = simulate_dataset_samples(&config, &net, None, &data, &s).unwrap();
    assert_eq!(sim.times.len(), 42);
    assert_eq!(sim.times[sim.switch_index], 60.3);
    assert_eq!(sim.samples, vec![0, 2, 3]);
    assert_eq!(sim.labels, vec![0, 1, 2]);

    let (x, t) = data.batch(&s.samples);
    let controlled = CoupledSystem::new(
        &net,
        x,
        t,
        simulation_objective(&config),
        config.dynamics.tau_v,
        Some(config.controller_settings()),
    )
    .unwrap();
    let free = controlled.free();
    let opts = &config.solver;
    let free_eq = relax(&free, opts);
    assert_eq!(free_eq.fraction_converged(), 1.0);
    let phi0 = free.phi(&free_eq.states);
    let ctrl_eq = solve_batch(
        &controlled,
        &controlled.state_with_phi(&phi0).unwrap(),
        opts,
    );
    assert_eq!(ctrl_eq.fraction_converged(), 1.0);

    let last = sim.times.len() - 1;
    for (j, tr) in sim.trajectories.iter().enumerate() {
        let free_rec = tr.free.as_ref().unwrap();
        let ctrl_rec = tr.controlled.as_ref().unwrap();
        assert_eq!(free_rec.termination, Termination::Converged, "{free_rec:?}");
        assert_eq!(ctrl_rec.termination, Termination::Converged, "{ctrl_rec:?}");
        assert_eq!(free_rec.points_recorded, free_rec.points_requested);
        assert_eq!(ctrl_rec.points_recorded, ctrl_rec.points_requested);
        assert_eq!(
            (free_rec.time_reached, ctrl_rec.time_reached),
            (60.3, 600.0)
        );

        let at_on = state_at(tr, sim.switch_index);
        let expected_on = controlled
            .state_with_phi(&phi0)
            .unwrap()
            .columns(j, 1)
            .into_owned();
        let d_on = max_abs_diff(&at_on, &expected_on);
        assert!(
            d_on <= 1e-8,
            "sample {j}: state at t_on vs free equilibrium {d_on:e}"
        );

        let d_end = max_abs_diff(
            &state_at(tr, last),
            &ctrl_eq.states.columns(j, 1).into_owned(),
        );
        assert!(
            d_end <= 1e-7,
            "sample {j}: state at t_end vs controlled equilibrium {d_end:e}"
        );
        // The controller changed the network: the controlled equilibrium is not phi0.
        assert!(max_abs_diff(&at_on, &state_at(tr, last)) > 1e-2);
        assert!(
            tr.loss[last] < tr.loss[sim.switch_index],
            "control lowers the loss"
        );
    }
}

/// Classical RK4 with a fixed small step on `tau dz/dt = r(z)`, recording at `times`
/// (multiples of the step) — independent of the crate's integrators.
fn rk4_states<M: EquilibriumSystem>(
    sys: &CoupledSystem<'_, M>,
    z0: &DMatrix<f64>,
    dt: f64,
    times: &[f64],
) -> Vec<DMatrix<f64>> {
    let tau = DMatrix::from_vec(sys.dim(), 1, sys.time_constants());
    let f = |z: &DMatrix<f64>| sys.residual(z).component_div(&tau);
    let mut z = z0.clone();
    let mut out = Vec::new();
    let mut step = 0usize;
    for &t in times {
        let target = (t / dt).round() as usize;
        while step < target {
            let k1 = f(&z);
            let k2 = f(&(&z + &k1 * (dt / 2.0)));
            let k3 = f(&(&z + &k2 * (dt / 2.0)));
            let k4 = f(&(&z + &k3 * dt));
            z += (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (dt / 6.0);
            step += 1;
        }
        out.push(z.clone());
    }
    out
}

/// (b) Inside both segments the recorded states follow an independent RK4 integration.
#[test]
fn recorded_states_follow_an_independent_integrator() {
    let net = net(5);
    let data = data();
    let s = settings(&[1], 5.0, 15.0, 31);
    let dt = 1e-3;
    for (method, tol) in [
        (SolverMethod::Tsit45, 1e-9),
        (SolverMethod::Bdf, 1e-8),
        (SolverMethod::Euler, 1e-3),
    ] {
        let config = config(method);
        let sim = simulate_dataset_samples(&config, &net, None, &data, &s).unwrap();
        let tr = &sim.trajectories[0];
        let (x, t) = data.batch(&s.samples);
        let controlled = CoupledSystem::new(
            &net,
            x,
            t,
            simulation_objective(&config),
            config.dynamics.tau_v,
            Some(config.controller_settings()),
        )
        .unwrap();
        let free = controlled.free();
        let k_on = sim.switch_index;
        let free_ref = rk4_states(&free, &free.initial_state(), dt, &sim.times[..=k_on]);
        let z_on = controlled.state_with_phi(&free_ref[k_on]).unwrap();
        let shifted: Vec<f64> = sim.times[k_on..].iter().map(|t| t - 5.0).collect();
        let ctrl_ref = rk4_states(&controlled, &z_on, dt, &shifted);
        let mut worst = 0.0f64;
        for k in 0..sim.times.len() {
            let reference = if k < k_on {
                controlled.state_with_phi(&free_ref[k]).unwrap()
            } else {
                ctrl_ref[k - k_on].clone()
            };
            worst = worst.max(max_abs_diff(&state_at(tr, k), &reference));
        }
        assert!(
            worst <= tol,
            "{}: max deviation from RK4 {worst:e} > {tol:e}",
            method.name()
        );
        // The free segment moved and the controller acted.
        assert!(tr.v.column(k_on).amax() > 1e-2);
        assert!(tr.psi_norm.last().unwrap() > &1e-3);
    }
}

/// (c) Before t_on the controller is off: u_i = e = u = 0 and |psi| = 0; at t_on it starts at rest.
#[test]
fn controller_is_off_before_t_on_and_at_rest_when_it_switches_on() {
    let net = net(7);
    let mut config = config(SolverMethod::Tsit45);
    config.controller.k_p = 0.5; // u jumps to -k_p grad L at t_on
    let sim = simulate_dataset_samples(
        &config,
        &net,
        None,
        &data(),
        &settings(&[0, 4], 10.0, 30.0, 31),
    )
    .unwrap();
    let k_on = sim.switch_index;
    assert_eq!(sim.times[k_on], 10.0);
    for tr in &sim.trajectories {
        for k in 0..k_on {
            assert_eq!(tr.u_i.column(k).amax(), 0.0);
            assert_eq!(tr.e.column(k).amax(), 0.0);
            assert_eq!(tr.u.column(k).amax(), 0.0);
            assert_eq!(
                (tr.psi_norm[k], tr.e_norm[k], tr.u_norm[k]),
                (0.0, 0.0, 0.0)
            );
            assert!(tr.loss[k].is_finite() && tr.v.column(k).iter().all(|v| v.is_finite()));
        }
        assert_eq!(tr.u_i.column(k_on).amax(), 0.0);
        assert_eq!(tr.e.column(k_on).amax(), 0.0);
        assert!(tr.u_norm[k_on] > 0.0, "proportional control acts at once");
        let (psi, e, u) = (
            tr.psi_norm[k_on + 5],
            tr.e_norm[k_on + 5],
            tr.u_norm[k_on + 5],
        );
        assert!(e > 0.0 && u > 0.0);
        assert!(
            (psi * psi - e * e - u * u).abs() <= 1e-12,
            "|psi|^2 = |e|^2 + |u|^2"
        );
    }
}

/// A segment is integrated to its last output time even when its state is already an
/// exact equilibrium (zero network, zero input): every point is recorded, for every method.
#[test]
fn an_equilibrium_state_is_recorded_at_every_output_time() {
    let mut net = net(1);
    net.params_mut().scale(0.0);
    let data = Dataset::new(DMatrix::zeros(4, 1), vec![1], 3, "zeros").unwrap();
    for method in SolverMethod::ALL {
        let mut config = config(method);
        config.solver.euler.dt = 0.1;
        let sim = simulate_dataset_samples(
            &config,
            &net,
            None,
            &data,
            &settings(&[0], 100.0, 120.0, 121),
        )
        .unwrap();
        let tr = &sim.trajectories[0];
        let free = tr.free.as_ref().unwrap();
        assert_eq!(
            free.termination,
            Termination::Converged,
            "{}",
            method.name()
        );
        assert_eq!(free.points_recorded, 101, "{}", method.name());
        // Every method stops at the segment's end (Euler's time is steps * dt).
        let past = free.time_reached - 100.0;
        assert!(past.abs() < 1e-9, "{}: {past}", method.name());
        assert_eq!(tr.controlled.as_ref().unwrap().points_recorded, 21);
        assert!(tr.v.iter().chain(tr.y.iter()).all(|v| v.is_finite()));
        assert_eq!(tr.v.columns(0, 101).amax(), 0.0, "{}", method.name());
        // Cross-entropy at y = 0 pushes y towards the label once the controller is on.
        assert!(tr.y[(1, 120)] > 0.1, "{}", method.name());
    }
}

/// A free solve that stops before t_on leaves the later points NaN and skips the
/// controlled segment; its record says why.
#[test]
fn an_unfinished_free_segment_is_reported_not_hidden() {
    let mut config = config(SolverMethod::Euler);
    config.solver.euler.dt = 0.1;
    config.solver.stop.max_steps = 30;
    let sim = simulate_dataset_samples(
        &config,
        &net(2),
        None,
        &data(),
        &settings(&[0], 10.0, 20.0, 21),
    )
    .unwrap();
    let tr = &sim.trajectories[0];
    let free = tr.free.as_ref().unwrap();
    assert_eq!(free.termination, Termination::MaxSteps);
    assert!(free.points_recorded < free.points_requested);
    assert!(tr.controlled.is_none());
    assert!(tr.v[(0, 1)].is_finite());
    assert!(tr.v[(0, 20)].is_nan() && tr.loss[20].is_nan() && tr.psi_norm[20].is_nan());
}

/// (d) Bad settings name the field.
#[test]
fn bad_settings_name_the_field() {
    let ok = settings(&[0, 1], 5.0, 10.0, 11);
    assert!(ok.validate(5).is_ok());
    let cases: Vec<(SimulationSettings, &str)> = vec![
        (
            SimulationSettings {
                t_on: -1.0,
                ..ok.clone()
            },
            "t_on",
        ),
        (
            SimulationSettings {
                t_on: f64::NAN,
                ..ok.clone()
            },
            "t_on",
        ),
        (
            SimulationSettings {
                t_end: 5.0,
                ..ok.clone()
            },
            "t_end",
        ),
        (
            SimulationSettings {
                t_end: f64::INFINITY,
                ..ok.clone()
            },
            "t_end",
        ),
        (
            SimulationSettings {
                points: 1,
                ..ok.clone()
            },
            "points",
        ),
        (
            SimulationSettings {
                samples: vec![],
                ..ok.clone()
            },
            "samples",
        ),
        (
            SimulationSettings {
                samples: vec![0, 5],
                ..ok.clone()
            },
            "samples",
        ),
        (
            SimulationSettings {
                samples: vec![1, 1],
                ..ok.clone()
            },
            "samples",
        ),
        (
            SimulationSettings {
                hidden_units: 0,
                ..ok.clone()
            },
            "hidden_units",
        ),
    ];
    for (s, field) in cases {
        let e = s.validate(5).expect_err(field).to_string();
        assert!(e.contains(&format!("`{field}`")), "{field}: {e}");
        // The simulation refuses them too.
        let e = simulate_dataset_samples(&config(SolverMethod::Tsit45), &net(0), None, &data(), &s)
            .expect_err(field)
            .to_string();
        assert!(e.contains(&format!("`{field}`")), "{field}: {e}");
    }
    let e = settings(&[7], 1.0, 2.0, 3)
        .validate(5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("0..5"), "says the allowed range: {e}");

    // The system-level function checks its system and times.
    let n = net(0);
    let (x, t) = data().batch(&[0]);
    let c = config(SolverMethod::Tsit45);
    let sys = CoupledSystem::new(
        &n,
        x,
        t,
        simulation_objective(&c),
        1.0,
        Some(c.controller_settings()),
    )
    .unwrap();
    let e = simulate_switch_on(&sys.free(), &c.solver, &[0.0, 1.0], 0.5).unwrap_err();
    assert!(e.to_string().contains("`controlled`"), "{e}");
    let e = simulate_switch_on(&sys, &c.solver, &[0.0, 2.0, 1.0], 0.5).unwrap_err();
    assert!(e.to_string().contains("`times`"), "{e}");
    let e = simulate_switch_on(&sys, &c.solver, &[0.0, 1.0], 1.0).unwrap_err();
    assert!(e.to_string().contains("`t_on`"), "{e}");
    let bad_solver = {
        let mut o = c.solver.clone();
        o.stop.atol = 0.0;
        o
    };
    let e = simulate_switch_on(&sys, &bad_solver, &[0.0, 1.0], 0.5).unwrap_err();
    assert!(e.to_string().contains("solver.atol"), "{e}");
}

fn npy_shape(path: &Path) -> Vec<usize> {
    read_npy(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .shape
}

#[test]
fn the_folder_holds_every_array_the_table_and_figures_and_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(SolverMethod::Tsit45);
    config.output.dir = dir.path().to_path_buf();
    let s = settings(&[0, 3], 2.0, 6.0, 7);
    let sim = simulate_dataset_samples(&config, &net(0), None, &data(), &s).unwrap();
    let provenance = Provenance {
        name: "toy".into(),
        command: "test".into(),
        params_source: "fresh".into(),
        settings: s.clone(),
    };
    let out = dir.path().join("simulate-toy");
    let written = write_simulation(&out, &config, &sim, &provenance).unwrap();
    for (name, shape) in [
        ("times", vec![7]),
        ("samples", vec![2]),
        ("labels", vec![2]),
        ("v", vec![2, 7, 6]),
        ("e", vec![2, 7, 6]),
        ("y", vec![2, 7, 3]),
        ("u_i", vec![2, 7, 3]),
        ("u", vec![2, 7, 3]),
        ("psi_norm", vec![2, 7]),
        ("e_norm", vec![2, 7]),
        ("u_norm", vec![2, 7]),
        ("loss", vec![2, 7]),
    ] {
        assert_eq!(npy_shape(&out.join(format!("{name}.npy"))), shape, "{name}");
    }
    // C order: v[s, t, i] is unit i of sample s at time t.
    let v = read_npy(&out.join("v.npy")).unwrap();
    assert_eq!(v.data[(7 + 4) * 6 + 2], sim.trajectories[1].v[(2, 4)]);
    let csv = std::fs::read_to_string(out.join("trajectories.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 7);
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(header.len(), 4 + 6 + 3 + 3 + 3 + 6 + 4);
    assert_eq!(&header[..5], &["sample", "label", "time", "phase", "v_0"]);
    assert_eq!(*header.last().unwrap(), "loss");
    assert!(lines[1].starts_with("0,0,0,free,"));
    assert!(lines[14].starts_with("3,2,6,controlled,"));
    assert_eq!(written.figures.len(), 2);
    assert!(out.join("figures/sample-3.png").is_file());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("simulate.json")).unwrap()).unwrap();
    assert_eq!(json["samples"][1]["sample"], 3);
    // Too short to settle: the segment ended at t_on before the steady-state test passed.
    assert_eq!(json["samples"][0]["free"]["termination"], "max-time");
    assert_eq!(json["settings"]["t_on"], 2.0);
    assert!(Config::load(Some(&out.join("config.toml")), &[]).unwrap() == config);

    let before = std::fs::read(out.join("simulate.json")).unwrap();
    let e = write_simulation(&out, &config, &sim, &provenance)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`name`") && e.contains("simulate-toy"), "{e}");
    assert_eq!(std::fs::read(out.join("simulate.json")).unwrap(), before);
}

// ---------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------

/// Every file of a folder (recursively) with its bytes.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(snapshot(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn cli_simulate_writes_a_folder_and_never_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "simulate",
        "--samples",
        "0,2",
        "--t-on",
        "5",
        "--t-end",
        "10",
        "--points",
        "11",
        "--name",
        "quick",
    ];
    let o = lcsim_in(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("runs/simulate-quick");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("results: runs/simulate-quick"), "{stdout}");
    assert!(
        stdout.contains("figure:  runs/simulate-quick/figures/sample-2.png"),
        "{stdout}"
    );
    // Default digits config: 64 inputs, 64 hidden units, 10 classes.
    for (name, shape) in [
        ("times", vec![11]),
        ("v", vec![2, 11, 64]),
        ("e", vec![2, 11, 64]),
        ("y", vec![2, 11, 10]),
        ("u_i", vec![2, 11, 10]),
        ("u", vec![2, 11, 10]),
        ("psi_norm", vec![2, 11]),
        ("e_norm", vec![2, 11]),
        ("u_norm", vec![2, 11]),
        ("loss", vec![2, 11]),
    ] {
        assert_eq!(npy_shape(&out.join(format!("{name}.npy"))), shape, "{name}");
    }
    for f in [
        "config.toml",
        "simulate.json",
        "trajectories.csv",
        "figures/sample-0.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("simulate.json")).unwrap()).unwrap();
    assert_eq!(json["params_source"], "fresh network (model.seed = 0)");
    assert_eq!(json["lcsim_version"], env!("CARGO_PKG_VERSION"));

    // The same name again fails, names the flag, and leaves the first folder as it was.
    let before = snapshot(&out);
    let o = lcsim_in(dir.path(), &args);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--name") && stderr(&o).contains("simulate-quick"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&out), before);

    // Without --name the automatic name gets a suffix when taken.
    let auto = ["simulate", "--t-on", "1", "--t-end", "2", "--points", "3"];
    assert!(lcsim_in(dir.path(), &auto).status.success());
    assert!(lcsim_in(dir.path(), &auto).status.success());
    assert!(dir
        .path()
        .join("runs/simulate-lcp-di-rnn-digits-seed0/simulate.json")
        .is_file());
    assert!(dir
        .path()
        .join("runs/simulate-lcp-di-rnn-digits-seed0-2/simulate.json")
        .is_file());
}

#[test]
fn cli_simulate_bad_input_names_the_flag_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (args, named) in [
        (vec!["--t-on", "-1"], "--t-on"),
        (vec!["--t-on", "5", "--t-end", "5"], "--t-end"),
        (vec!["--points", "1"], "--points"),
        (vec!["--samples", "100000"], "--samples"),
        (vec!["--hidden-units", "0"], "--hidden-units"),
        (vec!["--name", "a/b"], "--name"),
        (vec!["--set", "controller.alpha=0"], "controller.alpha"),
        (vec!["--params", "no/such.npz"], "no/such.npz"),
        (vec!["--run", "no/such/run"], "no/such/run"),
    ] {
        let mut all = vec!["simulate"];
        all.extend(&args);
        let o = lcsim_in(dir.path(), &all);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(named), "{args:?}: {}", stderr(&o));
        assert!(!dir.path().join("runs").exists(), "{args:?} left a folder");
    }
    let o = lcsim_in(dir.path(), &["simulate", "--run", "r", "--params", "p.npz"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    let o = lcsim_in(dir.path(), &["simulate", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--t-on",
        "--t-end",
        "--points",
        "--samples",
        "--split",
        "--hidden-units",
        "--name",
        "--run",
        "--params",
    ] {
        assert!(help.contains(flag), "{flag} not in --help");
    }
    assert!(
        help.contains("[default: 50]") && help.contains("time units"),
        "{help}"
    );
}

#[test]
fn cli_simulate_uses_a_runs_weights_or_a_parameter_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut train = vec!["train", "--quiet", "--set", "training.epochs=1"];
    train.extend(TINY);
    let o = lcsim_in(dir.path(), &train);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = "runs/lcp-di-rnn-xor-seed0";

    let o = lcsim_in(
        dir.path(),
        &[
            "simulate",
            "--run",
            run,
            "--split",
            "train",
            "--samples",
            "1",
            "--t-on",
            "2",
            "--t-end",
            "4",
            "--points",
            "5",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("runs/simulate-lcp-di-rnn-xor-seed0");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("simulate.json")).unwrap()).unwrap();
    assert!(json["params_source"]
        .as_str()
        .unwrap()
        .ends_with("params.npz (finished run)"));
    assert_eq!(json["settings"]["split"], "train");
    assert_eq!(npy_shape(&out.join("v.npy")), vec![1, 5, 4]);
    assert!(
        !out.join("figures").exists(),
        "the run's output.figures = false holds"
    );

    // The trained weights are what was simulated: the same file through --params agrees.
    let mut with_params = vec![
        "simulate",
        "--params",
        "runs/lcp-di-rnn-xor-seed0/params.npz",
        "--split",
        "train",
        "--samples",
        "1",
        "--t-on",
        "2",
        "--t-end",
        "4",
        "--points",
        "5",
    ];
    with_params.extend(TINY);
    let o = lcsim_in(dir.path(), &with_params);
    assert!(o.status.success(), "{}", stderr(&o));
    let other = dir.path().join("runs/simulate-params");
    assert_eq!(
        read_npy(&other.join("y.npy")).unwrap(),
        read_npy(&out.join("y.npy")).unwrap()
    );

    // A parameter file that does not fit the config is refused with a hint.
    let p = dir.path().join("wide.npz");
    save_params(
        &p,
        &RateNetwork::new(2, Topology::Recurrent { hidden: 5 }, 2, Activation::Tanh, 0).unwrap(),
    )
    .unwrap();
    let mut wrong = vec!["simulate", "--params", p.to_str().unwrap()];
    wrong.extend(TINY);
    let o = lcsim_in(dir.path(), &wrong);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--params") && stderr(&o).contains("model.hidden"),
        "{}",
        stderr(&o)
    );
}

/// The variants: LCP-EBD's gradient flow ends where LCP-DI's controller does (same
/// minimiser of E_alpha), LCP-LF records e = Q u, LCP-KP and LCP-LF record their learned
/// weights and refuse to run without them.
#[test]
fn each_variant_is_simulated_with_its_own_controller() {
    let run = |method: &str, feedback: Option<&lcsim::system::params::Params>| {
        let mut c = config(SolverMethod::Tsit45);
        c.method.name = Config::load(None, &[format!("method.name=\"{method}\"")])
            .unwrap()
            .method
            .name;
        simulate_dataset_samples(
            &c,
            &net(3),
            feedback,
            &data(),
            &settings(&[0, 1], 20.0, 400.0, 41),
        )
    };
    let di = run("lcp-di", None).unwrap();
    let ebd = run("lcp-ebd", None).unwrap();
    for (a, b) in di.trajectories.iter().zip(&ebd.trajectories) {
        let last = a.v.ncols() - 1;
        assert!(
            max_abs_diff(
                &a.v.columns(last, 1).into_owned(),
                &b.v.columns(last, 1).into_owned()
            ) < 1e-6
        );
        assert!(
            max_abs_diff(
                &a.e.columns(last, 1).into_owned(),
                &b.e.columns(last, 1).into_owned()
            ) < 1e-6
        );
        assert!(
            max_abs_diff(
                &a.u.columns(last, 1).into_owned(),
                &b.u.columns(last, 1).into_owned()
            ) < 1e-6
        );
        assert!(
            b.u_i.column(last).iter().all(|v| v.is_nan()),
            "EBD has no integral controller"
        );
        assert!(a.u_i.column(last).iter().all(|v| v.is_finite()));
    }
    assert!(ebd.feedback.is_none());

    let net = net(3);
    let q = lcsim::system::params::Params::new(vec![(
        "Q".into(),
        lcsim::learn::feedback::initial_linear_feedback(&net, 4),
    )]);
    let lf = run("lcp-lf", Some(&q)).unwrap();
    for tr in &lf.trajectories {
        for k in [10, 40] {
            let qu = q.tensor(0) * tr.u.columns(k, 1);
            assert!(max_abs_diff(&qu, &tr.e.columns(k, 1).into_owned()) < 1e-12);
        }
    }
    let names: Vec<&str> = lcsim::studies::simulate_write::simulation_arrays(&lf)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"feedback_Q"));
    let kp = run("lcp-kp", Some(&net.init_feedback(2))).unwrap();
    let names: Vec<&str> = lcsim::studies::simulate_write::simulation_arrays(&kp)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"feedback_B") && names.contains(&"feedback_G"));
    for method in ["lcp-kp", "lcp-lf"] {
        let err = run(method, None).unwrap_err().to_string();
        assert!(err.contains("feedback") && err.contains(method), "{err}");
    }
    let err = run("rbp", None).unwrap_err().to_string();
    assert!(
        err.contains("method.name") && err.contains("least-control"),
        "{err}"
    );
}
