//! The two studies of issue 5 item 6: the alignment of each least-control variant's update
//! with the RBP gradient against alpha (`lcsim align`, `lcsim::studies::alignment`) and H with the
//! test loss over training across runs (`lcsim compare`), including bad input.

mod common;

use common::{lcsim, stderr};
use lcsim::config::{Config, Method};
use lcsim::io::metrics::{to_csv, EpochDiagnostics, EpochMetrics};
use lcsim::solve::SolverSettings;
use lcsim::studies::alignment::{alignment_curve, compare_with_gradient, validate_alphas, Subject};
use lcsim::studies::check::{random_problem, CheckSettings};
use lcsim::system::params::Params;
use lcsim::system::rate::{D, W};
use lcsim::system::EquilibriumSystem;
use lcsim::system::KolenPollack;
use std::path::Path;

const ALPHAS: [f64; 6] = [1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3];

/// A config whose solves are tight enough for the weak-control limit (psi* ~ 1 / alpha).
fn tight_config() -> Config {
    Config {
        solver: {
            let mut o = SolverSettings::default();
            o.stop.atol = 1e-11;
            o.stop.rtol = 1e-11;
            o.adaptive.atol = 1e-14;
            o
        },
        ..Config::default()
    }
}

fn curve(
    config: &Config,
    variant: Method,
    feedback: Option<&Params>,
) -> lcsim::studies::alignment::AlignmentCurve {
    let (net, x, t) = random_problem(&CheckSettings::default()).unwrap();
    let subject = Subject {
        network: "random".into(),
        variant,
        net: &net,
        feedback,
    };
    alignment_curve(config, &subject, &x, &t, &ALPHAS).unwrap()
}

#[test]
fn di_update_aligns_with_the_gradient_as_alpha_grows() {
    let c = curve(&tight_config(), Method::LcpDi, None);
    assert_eq!(c.converged(), (3 * ALPHAS.len(), 3 * ALPHAS.len()));
    let cos: Vec<f64> = c.points.iter().map(|p| p.cosine).collect();
    let ratio: Vec<f64> = c.points.iter().map(|p| p.norm_ratio).collect();
    // Monotone towards 1 over the decades where the controller weakens.
    for w in cos.windows(2) {
        assert!(w[1] >= w[0] - 1e-9, "cosines {cos:?}");
    }
    assert!(
        cos[0] < 0.999,
        "strong control must not be aligned already: {cos:?}"
    );
    assert!(cos[5] > 0.999_999, "cosines {cos:?}");
    assert!((ratio[5] - 1.0).abs() < 1e-3, "norm ratios {ratio:?}");
    assert!((ratio[0] - 1.0).abs() > (ratio[5] - 1.0).abs(), "{ratio:?}");
    for p in &c.points {
        assert_eq!(p.samples_used, 3);
        assert!((p.beta - 1.0 / p.alpha).abs() <= 1e-12 * p.beta);
    }
}

#[test]
fn ebd_curve_equals_di_curve() {
    let config = tight_config();
    let di = curve(&config, Method::LcpDi, None);
    let ebd = curve(&config, Method::LcpEbd, None);
    for (a, b) in di.points.iter().zip(&ebd.points) {
        assert!((a.cosine - b.cosine).abs() < 1e-6, "{a:?} vs {b:?}");
        assert!(
            (a.norm_ratio - b.norm_ratio).abs() < 1e-5 * a.norm_ratio,
            "{a:?} vs {b:?}"
        );
        assert!((a.h - b.h).abs() < 1e-6 * a.h, "{a:?} vs {b:?}");
    }
}

#[test]
fn kp_with_transposed_weights_equals_di_and_random_feedback_does_not() {
    let config = tight_config();
    let (net, _, _) = random_problem(&CheckSettings::default()).unwrap();
    let p = net.params();
    let exact = Params::new(vec![
        ("B".into(), p.tensor(W).transpose()),
        ("G".into(), p.tensor(D).transpose()),
    ]);
    let di = curve(&config, Method::LcpDi, None);
    let kp = curve(&config, Method::LcpKp, Some(&exact));
    for (a, b) in di.points.iter().zip(&kp.points) {
        assert!((a.cosine - b.cosine).abs() < 1e-8, "{a:?} vs {b:?}");
        assert!((a.norm_ratio - b.norm_ratio).abs() < 1e-8, "{a:?} vs {b:?}");
    }
    let random = net.init_feedback(7);
    let kp = curve(&config, Method::LcpKp, Some(&random));
    assert!(
        kp.points[5].cosine < 0.999,
        "random B, G: {:?}",
        kp.points[5]
    );
}

#[test]
fn compare_with_gradient_is_the_cosine_with_the_descent_direction() {
    let g = Params::new(vec![(
        "a".into(),
        nalgebra::DMatrix::from_row_slice(1, 2, &[3.0, 4.0]),
    )]);
    let mut u = g.clone();
    u.scale(-2.0);
    let (cos, ratio) = compare_with_gradient(&u, &g, 4.0);
    assert!((cos - 1.0).abs() < 1e-15);
    assert!((ratio - 0.5).abs() < 1e-15);
    let (cos, ratio) = compare_with_gradient(&g.zeros_like(), &g, 1.0);
    assert!(cos.is_nan() && ratio.is_nan());
    assert_eq!(validate_alphas("a", &[10.0, 0.1]).unwrap(), vec![0.1, 10.0]);
    for bad in [&[][..], &[0.0], &[-1.0], &[f64::NAN], &[1.0, 1.0]] {
        let e = validate_alphas("--alphas", bad).unwrap_err().to_string();
        assert!(e.contains("--alphas") && e.contains("> 0"), "{e}");
    }
}

// ---------------------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------------------

/// A run folder as `lcsim train` leaves it (config.toml, metrics.csv, summary.json).
fn fake_run(dir: &Path, method: &str, h: &[f64]) {
    std::fs::create_dir_all(dir).unwrap();
    let config = Config::load(None, &[format!("method.name=\"{method}\"")]).unwrap();
    std::fs::write(dir.join("config.toml"), config.to_toml()).unwrap();
    let rows: Vec<EpochMetrics> = h
        .iter()
        .enumerate()
        .map(|(i, &h)| EpochMetrics {
            epoch: i + 1,
            train_loss: 1.0 / (i + 1) as f64,
            train_accuracy: 0.5,
            test_loss: 1.2 / (i + 1) as f64,
            test_accuracy: 0.5,
            mean_h: h,
            mean_steps: 10.0,
            max_steps: 20.0,
            fraction_unconverged: 0.0,
            fraction_free_unconverged: 0.0,
            skipped_samples: 0,
            learning_rate: 1e-3,
            wall_time_s: 1.0,
            feedback_angle_w: f64::NAN,
            feedback_angle_d: f64::NAN,
            fraction_folds: f64::NAN,
            fraction_uncertified: f64::NAN,
            diagnostics: EpochDiagnostics::default(),
            unconverged: Some(Default::default()),
        })
        .collect();
    std::fs::write(dir.join("metrics.csv"), to_csv(&rows)).unwrap();
    std::fs::write(dir.join("summary.json"), "{}").unwrap();
}

#[test]
fn compare_draws_two_runs_and_names_a_folder_without_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (a, b) = (dir.join("lcp-di"), dir.join("lcp-kp"));
    fake_run(&a, "lcp-di", &[1e-2, 3e-3, 1e-3]);
    fake_run(&b, "lcp-kp", &[2e-2, 5e-3, 2e-3, 1e-3]);
    let out = dir.join("out");
    let o = lcsim(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let png = std::fs::read(out.join("h_and_test_loss.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let csv = std::fs::read_to_string(out.join("h_and_test_loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 + 4);
    assert!(csv
        .lines()
        .nth(3)
        .unwrap()
        .starts_with("lcp-di,lcp-di,3,0.001,"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["runs"][1]["method"], "lcp-kp");
    assert!((json["runs"][1]["mean_h_last"].as_f64().unwrap() - 1e-3).abs() < 1e-15);

    // A folder without metrics.csv: a clear error naming it, non-zero exit, no panic.
    let empty = dir.join("not-a-run");
    std::fs::create_dir_all(&empty).unwrap();
    let o = lcsim(&[
        "compare",
        a.to_str().unwrap(),
        empty.to_str().unwrap(),
        "--out",
        dir.join("out2").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("not-a-run") && e.contains("metrics.csv"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(
        !dir.join("out2").exists(),
        "nothing written before the input is checked"
    );

    // A gradient baseline records no H.
    let rbp = dir.join("rbp");
    fake_run(&rbp, "rbp", &[f64::NAN, f64::NAN]);
    let o = lcsim(&[
        "compare",
        rbp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("rbp") && e.contains("least-control"), "{e}");
}

#[test]
fn align_writes_table_settings_and_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out");
    let align = |out: &std::path::Path| {
        lcsim(&[
            "align",
            "--variants",
            "lcp-di,lcp-lf",
            "--alphas",
            "10,0.1",
            "--samples",
            "6",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let o = align(&out);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("controlled solves converged"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("alignment.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 1 + 2 * 2);
    assert!(
        rows[1].starts_with("untrained,lcp-di,1e-1,1e1,"),
        "{}",
        rows[1]
    );
    assert!(
        rows[4].starts_with("untrained,lcp-lf,1e1,1e-1,"),
        "{}",
        rows[4]
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("alignment.json")).unwrap())
            .unwrap();
    assert_eq!(json["lcsim_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["samples"], 6);
    assert_eq!(json["curves"][0]["controlled_solves"], 2 * 6);
    assert!(json["config"].as_str().unwrap().contains("[solver]"));
    let png = std::fs::read(out.join("alignment.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // Same seed, same numbers.
    let again = dir.join("again");
    let o = align(&again);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        csv,
        std::fs::read_to_string(again.join("alignment.csv")).unwrap()
    );
}

#[test]
fn align_rejects_bad_input_with_the_flag_value_and_allowed_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--alphas", "0,1"], vec!["--alphas", "0", "> 0"]),
        (vec!["--alphas", "-1"], vec!["--alphas", "-1", "> 0"]),
        (vec!["--alphas", ""], vec!["--alphas", "empty", "> 0"]),
        (vec!["--alphas", "1,x"], vec!["--alphas", "`x`"]),
        (vec!["--alphas", "1,1"], vec!["--alphas", "twice"]),
        (
            vec!["--variants", "rbp"],
            vec!["--variants", "rbp", "lcp-di"],
        ),
        (
            vec!["--variants", "lcp-di,lcp-di"],
            vec!["--variants", "distinct"],
        ),
        (vec!["--variants", "none"], vec!["--variants", "--run"]),
        (vec!["--samples", "0"], vec!["--samples", "0", ">= 1"]),
        (
            vec!["--samples", "100000"],
            vec!["--samples", "100000", "test split"],
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["align", "--out", out];
        all.extend(&args);
        let o = lcsim(&all);
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(!e.contains("panicked"), "{args:?}: {e}");
        for want in expected {
            assert!(e.contains(want), "{args:?}: `{want}` not in {e}");
        }
    }
    // A run of a gradient baseline.
    let rbp = dir.join("rbp-run");
    fake_run(&rbp, "rbp", &[f64::NAN]);
    let o = lcsim(&["align", "--out", out, "--run", rbp.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("--run") && e.contains("rbp") && e.contains("lcp-di, lcp-kp, lcp-lf or lcp-ebd"),
        "{e}"
    );
    // A least-control run folder that was never finished.
    let unfinished = dir.join("unfinished");
    fake_run(&unfinished, "lcp-di", &[1e-2]);
    std::fs::remove_file(unfinished.join("summary.json")).unwrap();
    let o = lcsim(&["align", "--out", out, "--run", unfinished.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("unfinished") && e.contains("summary.json"),
        "{e}"
    );
    assert!(!Path::new(out).exists(), "nothing written for bad input");
}
