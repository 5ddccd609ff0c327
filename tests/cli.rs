//! The `lcsim` binary as a user runs it: `check` (rate network and `--system meta`) and
//! `equilibrium`, including bad input.

mod common;

use common::{lcsim, stderr};
use lcsim::control::relax;
use lcsim::control::{ControllerSettings, CoupledSystem, LossScale, Objective};
use lcsim::io::interop::{npy_from_matrix, save_params};
use lcsim::io::npz::{read_npz, write_npy, write_npz, NpyArray};
use lcsim::learn::plasticity::least_control_update;
use lcsim::numerics::activation::Activation;
use lcsim::solve::{solve_batch, SolverSettings};
use lcsim::system::loss::one_hot;
use lcsim::system::rate::{RateNetwork, Topology};
use nalgebra::DMatrix;
use std::path::Path;

#[test]
fn check_passes_and_reports_json() {
    let o = lcsim(&["check", "--json", "--alphas", "0.1,10,1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let r = &v["report"];
    assert!(r["fd_rel_error_lcp_vs_H"].as_f64().unwrap() <= 1e-6);
    let cos = r["cosine_lcp_vs_rbp"].as_array().unwrap();
    assert_eq!(cos.len(), 3);
    assert_eq!(r["alphas"].as_array().unwrap().len(), 3);
    assert!(cos[2].as_f64().unwrap() >= 0.999);
    assert_eq!(v["passed"], serde_json::Value::Bool(true));
}

#[test]
fn check_table_for_layered_net() {
    let o = lcsim(&["check", "--model", "ff", "--hidden", "4,3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("all checks passed"));
}

#[test]
fn check_fails_when_the_tolerance_is_impossible() {
    let o = lcsim(&["check", "--fd-tolerance", "1e-30", "--alphas", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL"));
}

#[test]
fn bad_values_name_the_field() {
    for (args, field) in [
        (vec!["check", "--alpha", "-1"], "alpha"),
        (vec!["check", "--atol", "0"], "--atol"),
        (vec!["check", "--tau-e", "0"], "tau_e"),
        (
            vec!["check", "--model", "rnn", "--hidden", "4,3"],
            "--hidden",
        ),
    ] {
        let o = lcsim(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(field), "{args:?}: {}", stderr(&o));
    }
    let o = lcsim(&["check", "--solver", "rk4"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("tsit45"), "lists the allowed solvers");
}

#[test]
fn check_meta_passes_and_reports_json() {
    let o = lcsim(&["check", "--system", "meta", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["system"], "meta");
    let r = &v["report"];
    for field in ["fd_rel_error_lcp_vs_H", "fd_rel_error_implicit_vs_L"] {
        let e = r[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} in {r}"));
        assert!(e <= 1e-6, "{field} = {e}");
    }
    assert!(r["cg_iterations"].as_u64().unwrap() > 0);
    assert_eq!(r["cg_converged"], true);
    let alphas = r["alphas"].as_array().unwrap();
    let cos: Vec<f64> = r["cosine_lcp_vs_implicit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap())
        .collect();
    assert_eq!(cos.len(), alphas.len());
    assert!(*cos.last().unwrap() >= 0.999, "{cos:?}");
    assert!(cos.last().unwrap() >= cos.first().unwrap(), "{cos:?}");
    for flag in ["passed_fd_lcp", "passed_fd_implicit", "passed_alignment"] {
        assert_eq!(r[flag], true, "{flag}");
    }
    assert_eq!(v["passed"], true);
}

#[test]
fn check_meta_table_and_failure() {
    let o = lcsim(&["check", "--system", "meta", "--alphas", "1,1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("implicit") && text.contains("all checks passed"),
        "{text}"
    );
    let o = lcsim(&[
        "check",
        "--system",
        "meta",
        "--fd-tolerance",
        "1e-30",
        "--alphas",
        "1000",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL"));
}

#[test]
fn check_meta_bad_values_name_the_flag() {
    for (flag, value) in [
        ("--alphas", "0.1,-1"),
        ("--alphas", "10,10"),
        ("--tasks", "0"),
        ("--support", "0"),
        ("--lambda", "0"),
        ("--fd-step", "0"),
        ("--learner-hidden", "5,x"),
    ] {
        let o = lcsim(&["check", "--system", "meta", flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}");
        let e = stderr(&o);
        assert!(e.contains(flag), "{flag} {value}: {e}");
    }
    let o = lcsim(&["check", "--system", "cnn"]);
    assert!(!o.status.success());
    for system in ["rate", "meta", "conv", "deq"] {
        assert!(stderr(&o).contains(system), "lists the allowed systems");
    }
}

/// Writes P.npz, X.npy, Y.npy for a small RNN and returns the network and data.
fn write_batch(dir: &Path) -> (RateNetwork, DMatrix<f64>, Vec<usize>) {
    let net =
        RateNetwork::new(4, Topology::Recurrent { hidden: 6 }, 3, Activation::Tanh, 7).unwrap();
    save_params(&dir.join("P.npz"), &net).unwrap();
    let x = DMatrix::from_fn(4, 5, |i, j| ((i * 5 + j) as f64 * 0.37).sin().abs());
    write_npy(&dir.join("X.npy"), &npy_from_matrix(&x.transpose(), false)).unwrap();
    let labels = vec![0usize, 2, 1, 2, 0];
    let y = NpyArray::new(vec![5], labels.iter().map(|&l| l as f64).collect()).unwrap();
    write_npy(&dir.join("Y.npy"), &y).unwrap();
    (net, x, labels)
}

#[test]
fn equilibrium_writes_what_the_library_computes() {
    let dir = tempfile::tempdir().unwrap();
    let (net, x, labels) = write_batch(dir.path());
    let p = |f: &str| dir.path().join(f).display().to_string();
    let o = lcsim(&[
        "equilibrium",
        "--params",
        &p("P.npz"),
        "--input",
        &p("X.npy"),
        "--labels",
        &p("Y.npy"),
        "--out",
        &p("R.npz"),
        "--alpha",
        "0.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = read_npz(&dir.path().join("R.npz")).unwrap();
    for (name, shape) in [
        ("free_v", vec![5, 6]),
        ("free_y", vec![5, 3]),
        ("v", vec![5, 6]),
        ("y", vec![5, 3]),
        ("u_i", vec![5, 3]),
        ("u", vec![5, 3]),
        ("e", vec![5, 6]),
        ("H", vec![5]),
        ("lcp_W", vec![6, 6]),
        ("lcp_b", vec![6]),
        ("rbp_E", vec![6, 4]),
        ("rbp_d", vec![3]),
    ] {
        assert_eq!(r[name].shape, shape, "{name}");
    }
    assert!(r["controlled_converged"].data.iter().all(|&c| c == 1.0));
    // The same computation through the library gives the same update.
    let objective = Objective::new(
        lcsim::system::loss::Loss::CrossEntropy,
        LossScale::BatchMean,
        5,
    );
    let ctrl = ControllerSettings {
        alpha: 0.5,
        ..ControllerSettings::default()
    };
    let sys = CoupledSystem::new(
        &net,
        x,
        one_hot(&labels, 3),
        objective.clone(),
        1.0,
        Some(ctrl),
    )
    .unwrap();
    // The controller switches on at the free equilibrium.
    let opts = SolverSettings::default();
    let phi0 = sys.phi(&relax(&sys.free(), &opts).states);
    let z = solve_batch(&sys, &sys.state_with_phi(&phi0).unwrap(), &opts).states;
    let w = least_control_update(&sys, &z)
        .tensor(lcsim::system::rate::W)
        .clone();
    let from_file = DMatrix::from_row_slice(6, 6, &r["lcp_W"].data);
    assert!((w - from_file).amax() <= 1e-12);
    // u = k_i u_i with k_p = 0, and at equilibrium u_i = -grad L / alpha.
    assert!(r["u"]
        .data
        .iter()
        .zip(&r["u_i"].data)
        .all(|(u, ui)| (u - ui).abs() <= 1e-15));
    // The diagnostics: a stable free state for every sample, no basin switch at alpha 0.5,
    // the spectral abscissa of the library's diagnostics.
    assert!(r["free_converged"].data.iter().all(|&c| c == 1.0));
    assert_eq!(r["basin_switch"].data, vec![0.0; 5]);
    let free = sys.free();
    let all: Vec<usize> = (0..5).collect();
    let a = lcsim::train::diagnostics::spectral_abscissae_of(&free, &phi0, &all);
    assert_eq!(r["free_spectral_abscissa"].shape, vec![5]);
    for (file, lib) in r["free_spectral_abscissa"].data.iter().zip(&a) {
        assert!(*file < 0.0 && (file - lib).abs() <= 1e-9, "{file} vs {lib}");
    }
}

#[test]
fn equilibrium_accepts_every_solver_of_the_config() {
    let dir = tempfile::tempdir().unwrap();
    write_batch(dir.path());
    let p = |f: &str| dir.path().join(f).display().to_string();
    let mut reference: Option<Vec<f64>> = None;
    for solver in [
        "anderson",
        "newton-krylov",
        "tsit45",
        "bdf",
        "esdirk34",
        "tr-bdf2",
        "euler",
    ] {
        let out = p(&format!("R-{solver}.npz"));
        let o = lcsim(&[
            "equilibrium",
            "--params",
            &p("P.npz"),
            "--input",
            &p("X.npy"),
            "--labels",
            &p("Y.npy"),
            "--out",
            &out,
            "--solver",
            solver,
            "--atol",
            "1e-8",
            "--rtol",
            "1e-8",
            "--ode-atol",
            "1e-12",
        ]);
        assert!(o.status.success(), "{solver}: {}", stderr(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("basin switches 0/5"), "{solver}: {stdout}");
        let r = read_npz(Path::new(&out)).unwrap();
        assert!(
            r["controlled_converged"].data.iter().all(|&c| c == 1.0),
            "{solver}"
        );
        assert_eq!(r["basin_switch"].data, vec![0.0; 5], "{solver}");
        assert!(r["controlled_fold_lambda"].data.iter().all(|l| l.is_nan()));
        // The accelerated solvers' equilibria are certified as the flow's; the integrators'
        // are the flow's by construction (not checked: NaN).
        let certified = &r["controlled_flow_certified"].data;
        if solver == "anderson" || solver == "newton-krylov" {
            assert_eq!(certified, &vec![1.0; 5], "{solver}");
        } else {
            assert!(certified.iter().all(|c| c.is_nan()), "{solver}");
        }
        // Every solver finds the same (unique, stable) equilibria.
        let v = r["v"].data.clone();
        match &reference {
            None => reference = Some(v),
            Some(v0) => {
                let d = v
                    .iter()
                    .zip(v0)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(d <= 1e-5, "{solver}: controlled v differs by {d:e}");
            }
        }
    }
}

#[test]
fn equilibrium_rejects_bad_files_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_batch(dir.path());
    let p = |f: &str| dir.path().join(f).display().to_string();
    // A parameter file without D.
    let params = read_npz(&dir.path().join("P.npz")).unwrap();
    let partial: Vec<(&str, &NpyArray)> = params
        .iter()
        .filter(|(n, _)| n.as_str() != "D")
        .map(|(n, a)| (n.as_str(), a))
        .collect();
    write_npz(&dir.path().join("noD.npz"), &partial).unwrap();
    // Inputs with a NaN, labels out of range, inputs of the wrong width.
    write_npy(
        &dir.path().join("nan.npy"),
        &NpyArray::new(vec![1, 4], vec![0.0, f64::NAN, 0.0, 0.0]).unwrap(),
    )
    .unwrap();
    write_npy(
        &dir.path().join("Ybad.npy"),
        &NpyArray::new(vec![5], vec![0.0, 1.0, 7.0, 0.0, 0.0]).unwrap(),
    )
    .unwrap();
    write_npy(
        &dir.path().join("Xwide.npy"),
        &NpyArray::new(vec![5, 3], vec![0.5; 15]).unwrap(),
    )
    .unwrap();
    for (params, input, labels, expect) in [
        ("noD.npz", "X.npy", "Y.npy", "missing array `D`"),
        ("P.npz", "nan.npy", "Y.npy", "non-finite"),
        ("P.npz", "X.npy", "Ybad.npy", "class label"),
        ("P.npz", "Xwide.npy", "Y.npy", "shape mismatch"),
        ("missing.npz", "X.npy", "Y.npy", "missing.npz"),
    ] {
        let o = lcsim(&[
            "equilibrium",
            "--params",
            &p(params),
            "--input",
            &p(input),
            "--labels",
            &p(labels),
            "--out",
            &p("R.npz"),
        ]);
        assert_eq!(o.status.code(), Some(2), "{params} {input} {labels}");
        assert!(stderr(&o).contains(expect), "{expect}: {}", stderr(&o));
        assert!(
            !dir.path().join("R.npz").exists(),
            "nothing written on error"
        );
    }
}

#[test]
fn throughput_json_reports_the_products_of_training() {
    let args = |batches: &str| {
        let out = lcsim(&[
            "throughput",
            "--json",
            "--batches",
            batches,
            "--threads",
            "1",
            "--set",
            "method.name=\"bp\"",
            "--set",
            "model.kind=\"ff\"",
            "--set",
            "model.hidden=[8]",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("one JSON object")
    };
    let (two, four) = (args("2"), args("4"));
    let per_sample = |r: &serde_json::Value| {
        r["training"][0]["product_mflop_per_sample"]
            .as_f64()
            .unwrap()
    };
    // BP on a layered 64-8-10 net does the same products for every sample: at least the
    // forward sweep and the weight gradients, 2 (2 * 64 * 8 + 2 * 8 * 10) flop.
    let bound = 2.0 * (2.0 * 64.0 * 8.0 + 2.0 * 8.0 * 10.0) / 1e6;
    assert!(per_sample(&two) >= bound, "{} < {bound}", per_sample(&two));
    assert!((per_sample(&two) - per_sample(&four)).abs() <= 1e-12 * per_sample(&two));
    assert_eq!(two["training"][0]["samples"], 128);
    assert_eq!(two["sizes"], serde_json::json!([64, 8, 10]));
    for r in [&two, &four] {
        let peak = r["dgemm_peak_gflops"].as_f64().unwrap();
        let row = &r["training"][0];
        let gflops = row["gflops"].as_f64().unwrap();
        assert!(peak > 0.0 && gflops > 0.0);
        let fraction = row["fraction_of_peak"].as_f64().unwrap();
        assert!((fraction - gflops / peak).abs() <= 1e-12 * fraction);
    }
}

/// `lcsim throughput` on every system: the product FLOPs it counts in the residual kernel
/// and in each convolution's kernels equal their closed forms from the shapes (rate RNN:
/// `4 n_h (n_h + n_y)` per sample; a convolution: `2 out_c (in_c k k) (out_h out_w)` per
/// sample, for the forward, the transpose and the weight gradient alike), every
/// convolution of the conv net and of the DEQ is timed, and training runs at each thread
/// count asked.
#[test]
fn throughput_times_the_conv_systems_and_counts_their_kernels() {
    let report = |sets: &[&str]| {
        let mut args = vec!["throughput", "--json", "--batches", "1", "--threads", "1,2"];
        args.extend([
            "--set",
            "data.source=\"digits\"",
            "--set",
            "data.train_limit=64",
        ]);
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = lcsim(&args);
        assert!(out.status.success(), "{sets:?}: {}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("one JSON object")
    };
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let n = |v: &serde_json::Value| v.as_u64().unwrap() as f64;
    // Chunks of 16 samples: the residual kernel's and the conv kernels' batch.
    let b = 16.0;

    let rnn = report(&["model.kind=\"rnn\"", "model.hidden=[12]"]);
    let mflop = f(&rnn["residual_kernel"]["mflop"]);
    assert_eq!(mflop, 4.0 * 12.0 * (12.0 + 10.0) * b / 1e6);
    assert_eq!(rnn["conv_kernels"], serde_json::json!([]));

    // conv: 1x8x8 -> conv 4 x 3x3 pad 1 + 2x2 avg pool -> 4x4x4 -> conv 6 x 3x3 stride 2
    // pad 1 -> 6x2x2 -> dense 8 -> 10.
    let conv = report(&[
        "model.kind=\"conv\"",
        "conv.layers=[{kind=\"conv\",channels=4,kernel=3,pad=1,pool=\"avg\"},{kind=\"conv\",channels=6,kernel=3,pad=1,stride=2},{kind=\"dense\",units=8}]",
    ]);
    assert_eq!(conv["model"], "conv");
    assert_eq!(conv["sizes"], serde_json::json!([64, 256, 24, 8, 10]));
    let expected = [("W1", [1, 8, 8], [4, 8, 8]), ("W2", [4, 4, 4], [6, 2, 2])];
    let deq = report(&["model.kind=\"deq\""]);
    // The default DEQ on digits: input pool 2 -> 1x4x4, channels 8, inner 16, kernel 3.
    let expected_deq = [
        ("K_enc", [1, 4, 4], [8, 4, 4]),
        ("K1", [8, 4, 4], [16, 4, 4]),
        ("K2", [16, 4, 4], [8, 4, 4]),
    ];
    for (r, convs) in [(&conv, &expected[..]), (&deq, &expected_deq[..])] {
        let rows = r["conv_kernels"].as_array().unwrap();
        assert_eq!(rows.len(), 3 * convs.len(), "{rows:?}");
        let peak = f(&r["dgemm_peak_gflops"]);
        for (row, (layer, input, output)) in rows.chunks(3).zip(convs) {
            let kernels: Vec<&str> = row.iter().map(|k| k["kernel"].as_str().unwrap()).collect();
            assert_eq!(kernels, ["forward", "transpose", "weight-gradient"]);
            let k = n(&row[0]["kernel_size"]);
            let flop = 2.0
                * output[0] as f64
                * input[0] as f64
                * k
                * k
                * (output[1] * output[2]) as f64
                * b;
            for kernel in row {
                assert_eq!(kernel["layer"], *layer);
                assert_eq!(kernel["input"], serde_json::json!(input));
                assert_eq!(kernel["output"], serde_json::json!(output));
                assert_eq!(f(&kernel["mflop"]), flop / 1e6, "{kernel}");
                let gflops = f(&kernel["gflops"]);
                let fraction = f(&kernel["fraction_of_peak"]);
                assert!(gflops > 0.0 && (fraction - gflops / peak).abs() <= 1e-12 * fraction);
            }
        }
        let training = r["training"].as_array().unwrap();
        assert_eq!(training.len(), 2);
        for (row, threads) in training.iter().zip([1, 2]) {
            assert_eq!(row["threads"], threads);
            assert_eq!(row["samples"], 64);
            assert!(f(&row["samples_per_second"]) > 0.0 && f(&row["gflops"]) > 0.0);
        }
    }
}

/// No control character (escape, carriage return, ...) but the line ends.
fn plain(text: &[u8]) -> bool {
    String::from_utf8_lossy(text)
        .chars()
        .all(|c| c == '\n' || !c.is_control())
}

/// The progress display of the long studies draws on stderr only when it is a terminal:
/// redirected (as here), `check --json` (rate and meta) still prints one JSON object on
/// stdout, and stdout and stderr of `check`, `simulate` and `equilibrium` hold no control
/// characters.
#[test]
fn progress_leaves_redirected_output_clean() {
    for args in [
        &["check", "--json", "--alphas", "0.1,10"][..],
        &["check", "--system", "meta", "--json"][..],
    ] {
        let o = lcsim(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
        assert_eq!(v["passed"], serde_json::Value::Bool(true), "{args:?}");
        assert!(plain(&o.stderr), "{args:?}: {:?}", stderr(&o));
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, _, _) = write_batch(dir.path());
    let d = dir.path();
    for args in [
        &["check", "--alphas", "0.1,10"][..],
        &[
            "simulate",
            "--samples",
            "0,1",
            "--t-on",
            "5",
            "--t-end",
            "10",
        ][..],
        &[
            "equilibrium",
            "--params",
            "P.npz",
            "--input",
            "X.npy",
            "--labels",
            "Y.npy",
            "--out",
            "R.npz",
        ][..],
    ] {
        let o = common::lcsim_in(d, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(plain(&o.stdout) && plain(&o.stderr), "{args:?}: {o:?}");
    }
}

/// On a terminal (a pseudo-terminal from `script`), `check` shows what it solves on stderr.
#[test]
fn progress_shows_what_check_solves_on_a_terminal() {
    let exe = env!("CARGO_BIN_EXE_lcsim");
    let o = std::process::Command::new("script")
        .args(["-qec", &format!("{exe} check --alphas 0.1,10"), "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("check: "), "{out}");
    assert!(out.contains("all checks passed"), "{out}");
}

/// What `check` reports to the progress sink: the free equilibrium, every finite-difference
/// probe of H_alpha and of L in turn (0..N of N, N the entries of the recurrent network, all
/// probed), then each alpha of the alignment.
#[test]
fn check_reports_each_probe_and_alpha() {
    use lcsim::studies::check::{random_problem, run_checks, CheckSettings};
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<(String, usize, usize)>> = Mutex::new(Vec::new());
    assert!(lcsim::studies::progress::set_sink(Box::new(
        |p, done, total| {
            SEEN.lock().unwrap().push((p.to_string(), done, total));
        }
    )));
    let s = CheckSettings {
        alphas: vec![0.1, 10.0],
        ..CheckSettings::default()
    };
    assert!(run_checks(&s).unwrap().passed());
    let (net, _, _) = random_problem(&s).unwrap();
    let n = lcsim::system::EquilibriumSystem::params(&net).num_scalars();
    let seen = SEEN.lock().unwrap().clone();
    let steps = |phase: &str| -> Vec<(usize, usize)> {
        seen.iter()
            .filter(|(p, _, _)| p == phase)
            .map(|&(_, d, t)| (d, t))
            .collect()
    };
    let all: Vec<(usize, usize)> = (0..n).map(|k| (k, n)).collect();
    assert_eq!(steps("check: FD probe of H_alpha"), all);
    assert_eq!(steps("check: FD probe of L"), all);
    assert_eq!(steps("check: alpha 1e-1"), [(0, 2)]);
    assert_eq!(steps("check: alpha 1e1"), [(1, 2)]);
    let order: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    let first = |p: &str| order.iter().position(|q| *q == p).unwrap();
    assert!(first("check: free equilibrium phi0") < first("check: FD probe of H_alpha"));
    assert!(first("check: FD probe of L") < first("check: alpha 1e-1"));
}
