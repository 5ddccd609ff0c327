//! The convolutional systems (src/system/conv_net.rs, conv_deq.rs) on the equilibrium-system
//! interface: their Jacobian products, second-order term and parameter products against
//! finite differences and the adjoint identity, the layered net's forward pass as its free
//! equilibrium, spec 6.3/6.4 through `lcsim check --system conv|deq`'s library call, config
//! errors that name the key, and training end to end.

mod common;

use common::{lcsim_in, stderr};
use lcsim::numerics::activation::Activation;
use lcsim::numerics::pool::PoolKind;
use lcsim::numerics::rng::Rng;
use lcsim::studies::check::CheckSettings;
use lcsim::studies::check_conv::{run_conv_checks, ConvCheckSettings, ConvModel};
use lcsim::system::conv_deq::{ConvDeq, DeqSpec};
use lcsim::system::conv_net::{ConvNet, LayerSpec};
use lcsim::system::EquilibriumSystem;
use nalgebra::DMatrix;

fn random(r: usize, c: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = Rng::seed_from_u64(seed);
    DMatrix::from_fn(r, c, |_, _| rng.normal())
}

fn layered(activation: Activation) -> ConvNet {
    let layers = [
        LayerSpec::conv(3, 3, 1).with_pool(PoolKind::Avg, 2),
        LayerSpec::conv(2, 3, 1).with_stride(2),
        LayerSpec::dense(5),
    ];
    ConvNet::new(&layers, (2, 6, 6), 3, activation, 1).unwrap()
}

fn deq() -> ConvDeq {
    deq_with_norms(true, true)
}

/// The small DEQ with GN1 (`inner_norm`) and GN3 (`output_norm`) switched as given.
fn deq_with_norms(inner_norm: bool, output_norm: bool) -> ConvDeq {
    let spec = DeqSpec {
        channels: 4,
        inner_channels: 6,
        kernel: 3,
        groups: 2,
        input_pool: 2,
        readout_pool: 2,
        init_std: 0.3,
        skip_gain: 0.7,
        inner_norm,
        output_norm,
    };
    ConvDeq::new(&spec, (1, 8, 8), 3, Activation::Tanh, 2).unwrap()
}

/// `J v`, `J^T w`, the second-order term and `(d_theta f)^T psi` of `net` at a random state
/// against central differences of f (and of `J^T psi`), and the adjoint identity.
fn check_products<S: EquilibriumSystem + Clone>(net: &S, what: &str) {
    let (n, b) = (net.state_dim(), 2);
    let x = random(net.input_dim(), b, 10).map(|v| v.abs());
    let phi = random(n, b, 11) * 0.5;
    let v = random(n, b, 12);
    let w = random(n, b, 13);
    let h = 1e-6;
    let f = |p: &DMatrix<f64>| net.vector_field(p, &x);
    let fd = (f(&(&phi + &v * h)) - f(&(&phi - &v * h))) / (2.0 * h);
    let jv = net.jvp(&phi, &x, &v);
    assert!(
        (&fd - &jv).amax() < 1e-6 * fd.amax().max(1.0),
        "{what}: J v"
    );
    let jtw = net.vjp(&phi, &x, &w);
    let (lhs, rhs) = (jv.dot(&w), v.dot(&jtw));
    assert!(
        (lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0),
        "{what}: {lhs} vs {rhs}"
    );
    // d/d eps [J(phi + eps v)^T psi], when the system gives it.
    let lin = net.linearize(&phi, &x, Some(&w));
    if let Some(second) = net.second_order_at(&lin, &v) {
        let back = |p: &DMatrix<f64>| net.vjp(p, &x, &w);
        let fd = (back(&(&phi + &v * h)) - back(&(&phi - &v * h))) / (2.0 * h);
        assert!(
            (&fd - &second).amax() < 1e-6 * fd.amax().max(1.0),
            "{what}: second order"
        );
    }
    // (d_theta f)^T psi: the gradient of <psi, f(phi, theta, x)>, a few entries per tensor.
    let grad = net.param_vjp(&phi, &x, &w);
    let mut probe = net.clone();
    let mut rng = Rng::seed_from_u64(14);
    let mut offset = 0;
    for (name, t) in net.params().iter() {
        for _ in 0..4 {
            let k = offset + ((rng.uniform() * t.len() as f64) as usize).min(t.len() - 1);
            let theta = net.params().flat_get(k);
            let at = |probe: &mut S, d: f64| {
                probe.params_mut().flat_set(k, theta + d);
                probe.vector_field(&phi, &x).dot(&w)
            };
            let fd = (at(&mut probe, h) - at(&mut probe, -h)) / (2.0 * h);
            probe.params_mut().flat_set(k, theta);
            let g = grad.flat_get(k);
            assert!(
                (fd - g).abs() < 1e-6 * fd.abs().max(1.0),
                "{what}: d/d{name}[{}]: {g} vs {fd}",
                k - offset
            );
        }
        offset += t.len();
    }
}

#[test]
fn layered_conv_net_products_match_finite_differences() {
    check_products(&layered(Activation::Tanh), "conv net, tanh");
    check_products(&layered(Activation::Sigmoid), "conv net, sigmoid");
}

#[test]
fn conv_deq_products_match_finite_differences() {
    check_products(&deq(), "conv DEQ");
    for (inner, output) in [(false, true), (true, false), (false, false)] {
        let what = format!("conv DEQ, inner_norm {inner}, output_norm {output}");
        check_products(&deq_with_norms(inner, output), &what);
    }
}

#[test]
fn switched_off_norms_are_identities_with_unused_parameters() {
    // Without GN1 and GN3, T = s(rho z + GN2(x_enc + K2 * s(K1 z))): rescaling K1 changes f,
    // and gamma1, beta1, gamma3, beta3 get no gradient.
    let net = deq_with_norms(false, false);
    let (n, b) = (net.state_dim(), 2);
    let x = random(net.input_dim(), b, 20).map(|v| v.abs());
    let phi = random(n, b, 21) * 0.5;
    let mut scaled = net.clone();
    *scaled.params_mut().tensor_mut(2) *= 3.0;
    let moved = (net.vector_field(&phi, &x) - scaled.vector_field(&phi, &x)).amax();
    assert!(moved > 1e-3, "K1's scale must matter without GN1: {moved}");
    let psi = random(n, b, 22);
    let g = net.param_vjp(&phi, &x, &psi);
    for name in ["gamma1", "beta1", "gamma3", "beta3"] {
        assert_eq!(g.get(name).unwrap().amax(), 0.0, "{name}");
    }
    assert!(g.get("gamma2").unwrap().amax() > 0.0);
}

#[test]
fn the_forward_pass_is_the_free_equilibrium_of_the_layered_net() {
    let net = layered(Activation::Tanh);
    let x = random(net.input_dim(), 3, 20);
    let phi0 = net.exact_free_equilibrium(&x).unwrap();
    assert!(net.vector_field(&phi0, &x).amax() < 1e-14);
    // Layer 1 is the first convolution of the image plus its bias.
    let rows = net.layer_rows()[0].clone();
    let drive = net.input_drive(&x);
    assert!((phi0.rows_range(rows.clone()) - drive.rows_range(rows)).amax() == 0.0);
}

#[test]
fn spec_checks_pass_on_the_small_conv_systems() {
    // Spec 6.3, 6.4 and LCP-KP as `lcsim check --system conv` runs them (the DEQ at alpha = 1, where
    // its controlled flow settles, with fewer probes and alphas to keep the test short).
    let conv = ConvCheckSettings::new(ConvModel::small_layered(), CheckSettings::default());
    let r = run_conv_checks(&conv).unwrap();
    assert!(r.passed(), "{r:?}");
    assert!(
        r.spec.fd_rel_error_lcp_vs_h < 1e-6 && r.spec.fd_rel_error_rbp_vs_l < 1e-6,
        "{r:?}"
    );
    // LCP-KP with the transposes as feedback is LCP-DI; with random feedback it is not.
    assert!(r.kp_transposes_rel_error_update <= 1e-6, "{r:?}");
    assert!(r.kp_random_cosine_to_di < 0.99, "{r:?}");
    let mut check = CheckSettings {
        alphas: vec![1.0, 1e3],
        fd_step: 1e-6,
        ..CheckSettings::default()
    };
    check.controller.alpha = 1.0;
    let mut deq = ConvCheckSettings::new(ConvModel::small_deq(), check);
    deq.probes_per_tensor = 2;
    let r = run_conv_checks(&deq).unwrap();
    assert!(r.passed(), "{r:?}");
    assert!(
        r.spec.cosine_lcp_vs_rbp[1] > r.spec.cosine_lcp_vs_rbp[0],
        "{r:?}"
    );
    assert!(r.kp_transposes_rel_error_update <= 1e-6, "{r:?}");
    assert!(r.kp_random_cosine_to_di < 0.99, "{r:?}");
}

#[test]
fn architectures_that_do_not_fit_are_errors_naming_the_key() {
    let img = (1, 8, 8);
    let err = |layers: &[LayerSpec]| {
        ConvNet::new(layers, img, 3, Activation::Tanh, 0)
            .unwrap_err()
            .to_string()
    };
    let e = err(&[LayerSpec::conv(2, 11, 1)]);
    assert!(e.contains("conv.layers[0].k") && e.contains("11"), "{e}");
    let e = err(&[LayerSpec::dense(4), LayerSpec::conv(2, 3, 1)]);
    assert!(e.contains("conv.layers[1].kind"), "{e}");
    let e = err(&[LayerSpec::conv(2, 3, 1).with_pool(PoolKind::Max, 9)]);
    assert!(e.contains("conv.layers[0].pool size"), "{e}");
    let mut no_channels = LayerSpec::conv(2, 3, 1);
    no_channels.channels = None;
    assert!(err(&[no_channels]).contains("conv.layers[0].channels"));
    let spec = |f: &dyn Fn(&mut DeqSpec)| {
        let mut s = DeqSpec::default();
        f(&mut s);
        ConvDeq::new(&s, img, 3, Activation::Tanh, 0)
            .unwrap_err()
            .to_string()
    };
    assert!(spec(&|s| s.groups = 3).contains("deq.groups"));
    assert!(spec(&|s| {
        s.groups = 8;
        s.output_norm = true;
    })
    .contains("deq.groups"));
    assert!(spec(&|s| s.kernel = 4).contains("deq.kernel"));
    assert!(spec(&|s| s.readout_pool = 5).contains("deq.readout_pool"));
    assert!(spec(&|s| s.input_pool = 0).contains("deq.input_pool"));
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (sets, key) in [
        (
            vec!["model.kind=\"conv\"", "data.source=\"xor\""],
            "data.source",
        ),
        (
            vec!["model.kind=\"conv\"", "method.name=\"rbp\""],
            "method.name",
        ),
        (
            vec!["model.kind=\"deq\"", "method.name=\"bp\""],
            "method.name",
        ),
        (
            vec!["model.kind=\"conv\"", "method.name=\"lcp-lf\""],
            "method.name",
        ),
        (vec!["model.kind=\"deq\"", "deq.groups=3"], "deq.groups"),
        (vec!["model.kind=\"rnn\"", "deq.groups=2"], "[deq]"),
        (
            vec![
                "model.kind=\"conv\"",
                "conv.layers=[{kind=\"conv\",channels=2,kernel=20}]",
            ],
            "conv.layers[0].k",
        ),
    ] {
        let mut args = vec!["train", "--quiet"];
        for s in &sets {
            args.push("--set");
            args.push(s);
        }
        let out = lcsim_in(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{sets:?}");
        assert!(stderr(&out).contains(key), "{sets:?}: {}", stderr(&out));
    }
    assert!(!dir.path().join("runs").exists());
}

/// Test accuracy and test loss of a 2-epoch run of the default DEQ on 400 digits by `method`.
fn deq_on_digits(method: &str) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let method = format!("method.name=\"{method}\"");
    let out = lcsim_in(
        dir.path(),
        &[
            "train",
            "--quiet",
            "--set",
            "model.kind=\"deq\"",
            "--set",
            &method,
            "--set",
            "controller.alpha=1.0",
            "--set",
            "controller.k_i=0.3",
            "--set",
            "solver.method=\"euler\"",
            "--set",
            "solver.dt=0.5",
            "--set",
            "solver.max_steps=1000",
            "--set",
            "data.train_limit=400",
            "--set",
            "data.test_limit=200",
            "--set",
            "training.epochs=2",
            "--set",
            "training.batch_size=32",
            "--set",
            "training.learning_rate=0.001",
            "--set",
            "training.diagnostics_samples=0",
            "--set",
            "output.name=\"d\"",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/d/summary.json")).unwrap(),
    )
    .unwrap();
    let metrics = std::fs::read_to_string(dir.path().join("runs/d/metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "fraction_unconverged")
        .unwrap();
    for line in metrics.lines().skip(1) {
        let v: f64 = line.split(',').nth(col).unwrap().parse().unwrap();
        assert_eq!(v, 0.0, "{method}: unconverged solves in {line}");
    }
    (
        summary["final_test_accuracy"].as_f64().unwrap(),
        summary["final_test_loss"].as_f64().unwrap(),
    )
}

#[test]
fn the_default_deq_learns_digits_by_rbp_and_by_least_control() {
    // Measured 2026-12-07: test accuracy 0.475 for both after 2 epochs (chance 0.1).
    let (rbp_acc, rbp_loss) = deq_on_digits("rbp");
    let (lcp_acc, lcp_loss) = deq_on_digits("lcp-di");
    assert!(rbp_acc > 0.3, "rbp: test accuracy {rbp_acc}");
    assert!(lcp_acc > 0.3, "lcp-di: test accuracy {lcp_acc}");
    // At alpha 1 (weak control of a well-damped DEQ) least control follows RBP's gradient.
    assert!(
        (lcp_loss - rbp_loss).abs() < 0.01 * rbp_loss,
        "test loss: lcp-di {lcp_loss} vs rbp {rbp_loss}"
    );
}

#[test]
fn conv_net_learns_digits_by_least_control() {
    let dir = tempfile::tempdir().unwrap();
    let out = lcsim_in(
        dir.path(),
        &[
            "train",
            "--quiet",
            "--set",
            "model.kind=\"conv\"",
            "--set",
            "conv.layers=[{kind=\"conv\",channels=4,kernel=3,pad=1,pool=\"avg\"},{kind=\"dense\",units=32}]",
            "--set",
            "training.epochs=1",
            "--set",
            "training.diagnostics_samples=8",
            "--set",
            "output.name=\"c\"",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/c/summary.json")).unwrap(),
    )
    .unwrap();
    let acc = summary["final_test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.6, "test accuracy {acc} after one epoch");
    assert!(dir.path().join("runs/c/params.npz").is_file());

    // The trained run simulates: chosen feature-map units, the controller switched on.
    let sim = |extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "--run",
            "runs/c",
            "--samples",
            "0,1",
            "--points",
            "41",
        ];
        args.extend_from_slice(extra);
        lcsim_in(dir.path(), &args)
    };
    let out = sim(&["--units", "0,7,100", "--name", "s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let folder = dir.path().join("runs/simulate-s");
    let csv = std::fs::read_to_string(folder.join("trajectories.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.contains("psi_norm"), "{header}");
    assert!(folder.join("figures/sample-0.png").is_file());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("simulate.json")).unwrap())
            .unwrap();
    assert!(json.to_string().contains("checkpoint.npz"), "{json}");
    // The conv layer's maps, free vs controlled: one figure per sample, 3 rows of 4 channels.
    for i in [0, 1] {
        let name = format!("figures/sample-{i}-v1-maps.png");
        assert_eq!(
            png_size(&folder.join(&name)),
            lcsim::plot::feature_maps_size(3, 4),
            "{name}"
        );
        assert!(json["figures"].to_string().contains(&name), "{json}");
    }
    // The controller lowers each sample's loss (spec 2.1): L at t_end < L at t_on.
    let cols: Vec<&str> = header.split(',').collect();
    let at = |name: &str| cols.iter().position(|c| *c == name).unwrap();
    let (sample, phase, loss) = (at("sample"), at("phase"), at("loss"));
    for i in ["0", "1"] {
        let rows: Vec<Vec<&str>> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|r| r[sample] == i)
            .collect();
        let on = rows.iter().position(|r| r[phase] != "free").unwrap();
        let value = |r: &Vec<&str>| r[loss].parse::<f64>().unwrap();
        let (l_on, l_end) = (value(&rows[on]), value(rows.last().unwrap()));
        assert!(
            l_end < l_on,
            "sample {i}: loss {l_on} at t_on -> {l_end} at t_end"
        );
    }
    // A unit beyond the state is an error naming --units.
    let out = sim(&["--units", "100000"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("--units") && e.contains("100000"), "{e}");

    // A fresh DEQ simulates too (a genuine fixed point before t_on).
    let deq_sim = |points: &str, t_on: &str, t_end: &str, name: &str| {
        let out = lcsim_in(
            dir.path(),
            &[
                "simulate",
                "--set",
                "model.kind=\"deq\"",
                "--samples",
                "0",
                "--points",
                points,
                "--t-on",
                t_on,
                "--t-end",
                t_end,
                "--name",
                name,
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        dir.path().join(format!("runs/simulate-{name}"))
    };
    let folder = deq_sim("21", "10", "20", "d");
    assert!(folder.join("trajectories.csv").is_file());
    // z's first 8 channels, free (t = 10) vs controlled (t = 20).
    let maps = folder.join("figures/sample-0-z-maps.png");
    assert_eq!(png_size(&maps), lcsim::plot::feature_maps_size(3, 8));
    // Control from t = 0: no free state to compare, one row (the controlled maps).
    let maps = deq_sim("11", "0", "10", "d0").join("figures/sample-0-z-maps.png");
    assert_eq!(png_size(&maps), lcsim::plot::feature_maps_size(1, 8));
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[1..4], b"PNG", "{}", path.display());
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The feature-map layouts tile the conv layers' rows of phi (channel-major maps) and the
/// DEQ's z.
#[test]
fn feature_map_layouts_cover_the_conv_states() {
    let net = layered(Activation::Tanh);
    let layouts = net.feature_maps();
    let rows = net.layer_rows();
    let mut conv_layers = 0;
    for (k, r) in rows.iter().enumerate() {
        if let Some((c, h, w)) = net.feature_map(k) {
            let l = &layouts[conv_layers];
            assert_eq!((l.channels, l.height, l.width), (c, h, w));
            assert_eq!(&l.rows, r);
            assert_eq!(l.rows.len(), c * h * w);
            assert_eq!(l.name, format!("v{}", k + 1));
            conv_layers += 1;
        }
    }
    assert!(conv_layers >= 1);
    assert_eq!(layouts.len(), conv_layers);
    let d = deq();
    let z = &d.feature_maps()[0];
    let (c, h, w) = d.feature_map();
    assert_eq!(z.rows, d.feature_rows());
    assert_eq!(z.rows.len(), c * h * w);
    assert_eq!(z.rows.end, d.loss_rows().start);
}

/// A figure of maps with a wrong number of values, or too many columns, is an error naming
/// the row; a valid one is written at its documented size.
#[test]
fn feature_map_figures_check_their_shapes() {
    use lcsim::plot::{feature_maps, ColourScale, FeatureMapFigure, FeatureMapRow, FigureFormat};
    let dir = tempfile::tempdir().unwrap();
    let row = |caption: &str, len: usize| FeatureMapRow {
        caption: caption.into(),
        maps: vec![(0..len).map(|i| i as f64).collect(); 2],
        scale: ColourScale::sequential_over(&[0.0, 5.0]),
    };
    let fig = |rows| FeatureMapFigure {
        title: "t".into(),
        height: 2,
        width: 3,
        columns: vec!["a".into(), "b".into()],
        rows,
    };
    let path = dir.path().join("m.png");
    let e = feature_maps(
        &fig(vec![row("ok", 6), row("short", 5)]),
        &path,
        FigureFormat::Png,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("short") && e.contains("2 maps of 6 values"),
        "{e}"
    );
    assert!(!path.exists());
    let mut wide = fig(vec![row("ok", 6)]);
    wide.columns = (0..13).map(|i| i.to_string()).collect();
    let e = feature_maps(&wide, &path, FigureFormat::Png)
        .unwrap_err()
        .to_string();
    assert!(e.contains("13"), "{e}");
    feature_maps(
        &fig(vec![row("a", 6), row("b", 6)]),
        &path,
        FigureFormat::Png,
    )
    .unwrap();
    assert_eq!(png_size(&path), lcsim::plot::feature_maps_size(2, 2));
    // A diverging scale is symmetric about 0; all-zero values still give a valid scale.
    assert_eq!(
        ColourScale::diverging_over(&[-0.5, 2.0]),
        ColourScale::Diverging { max_abs: 2.0 }
    );
    assert_eq!(
        ColourScale::sequential_over(&[3.0, 3.0]),
        ColourScale::Sequential { lo: 2.5, hi: 3.5 }
    );
}

#[test]
fn parameters_round_trip_and_a_wrong_layout_names_the_tensor() {
    let net = layered(Activation::Tanh);
    let layers = net.specs().to_vec();
    let back = ConvNet::from_params(
        &layers,
        (2, 6, 6),
        3,
        Activation::Tanh,
        net.params().clone(),
    )
    .unwrap();
    assert_eq!(back.params(), net.params());
    let mut bad = net.params().clone();
    *bad.tensor_mut(2) = DMatrix::zeros(1, 1);
    let e = ConvNet::from_params(&layers, (2, 6, 6), 3, Activation::Tanh, bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("W2"), "{e}");
    let d = deq();
    let mut nan = d.params().clone();
    nan.tensor_mut(0)[(0, 0)] = f64::NAN;
    let e = ConvDeq::from_params(d.spec(), (1, 8, 8), 3, Activation::Tanh, nan)
        .unwrap_err()
        .to_string();
    assert!(e.contains("K_enc"), "{e}");
}
