//! Figures: every figure is written as PNG and SVG for realistic and degenerate metrics, with
//! the documented pixel size, readable labels in the SVG text, atomic writes and clean errors.
//!
//! Set `LCSIM_PLOT_SAMPLES=/some/dir` to keep a copy of the realistic figures for viewing.

use lcsim::error::LcsimError;
use lcsim::io::metrics::{EpochDiagnostics, EpochMetrics};
use lcsim::plot::{
    control_magnitude, feedback_alignment, learning_curves, solver_statistics, stability,
    trajectories, trajectories_size, FigureFormat, Series, TrajectoryPanel, ACCURACY_LABEL,
    EPOCH_LABEL, H_LABEL, LOSS_LABEL, ONE_PANEL_SIZE, STEPS_LABEL, TIME_LABEL, TWO_PANEL_SIZE,
    UNCONVERGED_LABEL,
};
use std::path::{Path, PathBuf};

const FORMATS: [FigureFormat; 2] = [FigureFormat::Png, FigureFormat::Svg];
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

fn row(epoch: usize) -> EpochMetrics {
    EpochMetrics {
        epoch,
        train_loss: f64::NAN,
        train_accuracy: f64::NAN,
        test_loss: f64::NAN,
        test_accuracy: f64::NAN,
        mean_h: f64::NAN,
        mean_steps: f64::NAN,
        max_steps: f64::NAN,
        fraction_unconverged: f64::NAN,
        fraction_free_unconverged: f64::NAN,
        skipped_samples: 0,
        learning_rate: 0.01,
        wall_time_s: 1.0,
        feedback_angle_w: f64::NAN,
        feedback_angle_d: f64::NAN,
        fraction_folds: f64::NAN,
        fraction_uncertified: f64::NAN,
        diagnostics: EpochDiagnostics::default(),
        unconverged: None,
    }
}

/// Five epochs of a run that learns; the test split is evaluated on epochs 1, 3 and 5.
fn realistic() -> Vec<EpochMetrics> {
    (1..=5)
        .map(|e| {
            let t = e as f64;
            let evaluated = e % 2 == 1;
            EpochMetrics {
                train_loss: 2.3 * (-0.45 * t).exp() + 0.1,
                train_accuracy: 1.0 - 0.85 * (-0.6 * t).exp(),
                test_loss: if evaluated {
                    2.4 * (-0.4 * t).exp() + 0.15
                } else {
                    f64::NAN
                },
                test_accuracy: if evaluated {
                    0.97 - 0.8 * (-0.55 * t).exp()
                } else {
                    f64::NAN
                },
                mean_h: 0.8 * 10f64.powf(-0.6 * (t - 1.0)),
                mean_steps: 180.0 - 20.0 * t,
                max_steps: 600.0 - 60.0 * t,
                fraction_unconverged: 0.08 / t,
                fraction_free_unconverged: 0.02 / t,
                skipped_samples: 5 - e,
                ..row(e)
            }
        })
        .collect()
}

/// Width and height from the IHDR chunk, after checking the PNG signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.len() > 33, "PNG too short: {} bytes", bytes.len());
    assert_eq!(bytes[..8], PNG_SIGNATURE, "not a PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR", "first chunk is not IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

fn target(dir: &Path, name: &str, format: FigureFormat) -> PathBuf {
    dir.join(format!("{name}.{}", format.extension()))
}

/// Checks a written figure: PNG of the expected size, or SVG containing every text.
fn check_figure(path: &Path, format: FigureFormat, size: (u32, u32), texts: &[&str]) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!bytes.is_empty());
    match format {
        FigureFormat::Png => assert_eq!(png_size(&bytes), size, "{}", path.display()),
        FigureFormat::Svg => {
            let text = String::from_utf8(bytes).expect("SVG is UTF-8");
            assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(80)]);
            assert!(text.trim_end().ends_with("</svg>"));
            assert!(text.contains(&format!("width=\"{}\"", size.0)));
            assert!(text.contains(&format!("height=\"{}\"", size.1)));
            for t in texts {
                assert!(text.contains(t), "{} lacks the text `{t}`", path.display());
            }
        }
    }
}

/// Only `expected` names are in `dir` (no temporary files left behind).
fn assert_dir_holds(dir: &Path, expected: &[&Path]) {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    found.sort();
    let mut want: Vec<PathBuf> = expected.iter().map(|p| p.to_path_buf()).collect();
    want.sort();
    assert_eq!(found, want);
}

fn keep_sample(path: &Path) {
    if let Ok(dir) = std::env::var("LCSIM_PLOT_SAMPLES") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(path, Path::new(&dir).join(path.file_name().unwrap())).unwrap();
    }
}

fn trajectory_panels(n: usize) -> (Vec<f64>, Vec<TrajectoryPanel>) {
    let times: Vec<f64> = (0..=n).map(|k| 20.0 * k as f64 / n as f64).collect();
    let unit = |tau: f64, a: f64| -> Vec<f64> {
        times
            .iter()
            .map(|&t| a * (1.0 - (-t / tau).exp()) + 0.1 * (t * 1.3).sin() * (-t / 8.0).exp())
            .collect()
    };
    let on = 10.0;
    let psi: Vec<f64> = times
        .iter()
        .map(|&t| {
            if t < on {
                0.0
            } else {
                0.6 * (1.0 - (-(t - on) / 1.5).exp())
            }
        })
        .collect();
    let e: Vec<f64> = times
        .iter()
        .map(|&t| {
            if t < on {
                0.9
            } else {
                0.9 * (-(t - on) / 1.5).exp() + 0.05
            }
        })
        .collect();
    let u: Vec<f64> = psi.iter().map(|p| 0.8 * p).collect();
    let loss: Vec<f64> = e.iter().map(|v| 0.5 * v * v + 0.2).collect();
    let panels = vec![
        (
            "hidden units".to_string(),
            "rate".to_string(),
            vec![
                Series::new("hidden 1", unit(1.0, 0.8)),
                Series::new("hidden 7", unit(2.0, -0.4)),
                Series::new("hidden 12", unit(0.5, 0.3)),
            ],
        ),
        (
            "output units".to_string(),
            "rate".to_string(),
            vec![
                Series::new("output 0 (target class)", unit(3.0, 1.0)),
                Series::new("output 1", unit(3.0, 0.2)),
            ],
        ),
        (
            "control".to_string(),
            "magnitude".to_string(),
            vec![
                Series::new("|ψ(t)|", psi),
                Series::new("|e(t)|", e),
                Series::new("|u(t)|", u),
            ],
        ),
        (
            "loss".to_string(),
            "cross-entropy".to_string(),
            vec![Series::new("loss", loss)],
        ),
    ];
    (times, panels)
}

#[test]
fn png_signature_and_size_parsing() {
    let mut fake = PNG_SIGNATURE.to_vec();
    fake.extend([0, 0, 0, 13]);
    fake.extend(b"IHDR");
    fake.extend(1600u32.to_be_bytes());
    fake.extend(900u32.to_be_bytes());
    fake.extend([8, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(png_size(&fake), (1600, 900));
}

#[test]
fn figure_format_names_and_extensions() {
    assert_eq!(FigureFormat::Png.extension(), "png");
    assert_eq!(FigureFormat::Svg.extension(), "svg");
    assert_eq!(
        serde_json::to_string(&FigureFormat::Svg).unwrap(),
        "\"svg\""
    );
    let f: FigureFormat = serde_json::from_str("\"png\"").unwrap();
    assert_eq!(f, FigureFormat::Png);
    use clap::ValueEnum;
    assert_eq!(
        FigureFormat::from_str("svg", true).unwrap(),
        FigureFormat::Svg
    );
}

#[test]
fn learning_curves_realistic() {
    let dir = tempfile::tempdir().unwrap();
    let rows = realistic();
    for format in FORMATS {
        let path = target(dir.path(), "learning_curves", format);
        learning_curves(&rows, "MNIST, LCP (5 epochs)", &path, format).unwrap();
        check_figure(
            &path,
            format,
            TWO_PANEL_SIZE,
            &[
                EPOCH_LABEL,
                LOSS_LABEL,
                ACCURACY_LABEL,
                "train",
                "test",
                "MNIST",
            ],
        );
        keep_sample(&path);
    }
    assert_dir_holds(
        dir.path(),
        &[
            &target(dir.path(), "learning_curves", FigureFormat::Png),
            &target(dir.path(), "learning_curves", FigureFormat::Svg),
        ],
    );
}

#[test]
fn control_magnitude_realistic() {
    let dir = tempfile::tempdir().unwrap();
    for format in FORMATS {
        let path = target(dir.path(), "control", format);
        assert!(control_magnitude(&realistic(), "control magnitude", &path, format).unwrap());
        check_figure(
            &path,
            format,
            ONE_PANEL_SIZE,
            &[
                EPOCH_LABEL,
                H_LABEL,
                "test cross-entropy loss",
                "mean H (left axis)",
                "test loss (right axis)",
                "10⁻",
            ],
        );
        keep_sample(&path);
    }
}

#[test]
fn solver_statistics_realistic() {
    let dir = tempfile::tempdir().unwrap();
    for format in FORMATS {
        let path = target(dir.path(), "solver", format);
        solver_statistics(&realistic(), "solver", &path, format).unwrap();
        check_figure(
            &path,
            format,
            TWO_PANEL_SIZE,
            &[
                EPOCH_LABEL,
                STEPS_LABEL,
                UNCONVERGED_LABEL,
                "mean",
                "max",
                "free solves",
                "controlled / adjoint solves",
            ],
        );
        keep_sample(&path);
    }
}

#[test]
fn trajectories_realistic_with_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (times, panels) = trajectory_panels(400);
    for format in FORMATS {
        let path = target(dir.path(), "trajectories", format);
        trajectories(
            &times,
            &panels,
            Some((10.0, "control on")),
            "sample 3: free phase, then control",
            &path,
            format,
        )
        .unwrap();
        check_figure(
            &path,
            format,
            trajectories_size(panels.len(), true),
            &[
                TIME_LABEL,
                "hidden units",
                "output units",
                "hidden 12",
                "output 0 (target class)",
                "|ψ(t)|",
                "|u(t)|",
                "cross-entropy",
                "control on",
            ],
        );
        keep_sample(&path);
    }
}

#[test]
fn trajectories_sizes_grow_with_panels() {
    let (w, h1) = trajectories_size(1, true);
    let (_, h4) = trajectories_size(4, true);
    let (_, h4_untitled) = trajectories_size(4, false);
    assert_eq!(w, 1600);
    assert!(h4 > h1 && h4_untitled < h4);
}

/// Single epochs, all-NaN columns, constant values and infinities: figures are still drawn.
#[test]
fn degenerate_metrics_are_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let one = vec![EpochMetrics {
        train_loss: 0.7,
        train_accuracy: 0.8,
        test_loss: 0.75,
        test_accuracy: 0.79,
        mean_h: 0.01,
        mean_steps: 100.0,
        max_steps: 100.0,
        fraction_unconverged: 0.0,
        fraction_free_unconverged: 0.0,
        ..row(1)
    }];
    let nans: Vec<EpochMetrics> = (1..=3)
        .map(|e| EpochMetrics {
            train_loss: if e == 2 { 0.5 } else { f64::NAN },
            ..row(e)
        })
        .collect();
    let constant: Vec<EpochMetrics> = (1..=4)
        .map(|e| EpochMetrics {
            train_loss: 0.0,
            train_accuracy: 1.0,
            test_loss: 0.0,
            test_accuracy: 1.0,
            mean_h: 2.5e-4,
            mean_steps: 50.0,
            max_steps: 50.0,
            fraction_unconverged: 1.0,
            fraction_free_unconverged: 0.0,
            ..row(e)
        })
        .collect();
    let infinite: Vec<EpochMetrics> = (1..=4)
        .map(|e| EpochMetrics {
            train_loss: if e == 2 {
                f64::INFINITY
            } else {
                1.0 / e as f64
            },
            train_accuracy: if e == 3 {
                f64::NEG_INFINITY
            } else {
                0.2 * e as f64
            },
            test_loss: f64::INFINITY,
            mean_h: if e == 1 { f64::INFINITY } else { 0.0 },
            mean_steps: 1e6 * e as f64,
            max_steps: f64::INFINITY,
            fraction_unconverged: 1e-12,
            ..row(e)
        })
        .collect();
    // Unsorted epochs, a huge epoch number and tiny differences.
    let odd: Vec<EpochMetrics> = [1000usize, 3, 7]
        .iter()
        .map(|&e| EpochMetrics {
            train_loss: 1.0 + 1e-13 * e as f64,
            train_accuracy: 0.5,
            mean_h: 1e-300,
            mean_steps: 1e-7 * e as f64,
            ..row(e)
        })
        .collect();
    for (name, rows) in [
        ("one", one),
        ("nans", nans),
        ("constant", constant),
        ("infinite", infinite),
        ("odd", odd),
    ] {
        for format in FORMATS {
            let p = target(dir.path(), &format!("{name}_curves"), format);
            learning_curves(&rows, name, &p, format).unwrap();
            if name == "nans" {
                // A loss but never an accuracy (a regression loss): the loss panel alone.
                check_figure(&p, format, ONE_PANEL_SIZE, &["mean loss"]);
            } else {
                check_figure(&p, format, TWO_PANEL_SIZE, &[LOSS_LABEL, ACCURACY_LABEL]);
            }

            let p = target(dir.path(), &format!("{name}_solver"), format);
            solver_statistics(&rows, name, &p, format).unwrap();
            check_figure(
                &p,
                format,
                TWO_PANEL_SIZE,
                &[STEPS_LABEL, UNCONVERGED_LABEL],
            );

            let p = target(dir.path(), &format!("{name}_control"), format);
            let written = control_magnitude(&rows, name, &p, format).unwrap();
            let has_h = rows.iter().any(|r| r.mean_h.is_finite());
            assert_eq!(written, has_h, "{name}");
            if written {
                check_figure(&p, format, ONE_PANEL_SIZE, &[H_LABEL]);
            } else {
                assert!(!p.exists());
            }
        }
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "png") {
            keep_sample(&p);
        }
    }
}

#[test]
fn feedback_alignment_is_drawn_for_kolen_pollack_runs_only() {
    let dir = tempfile::tempdir().unwrap();
    let kp: Vec<EpochMetrics> = (1..=4)
        .map(|e| EpochMetrics {
            feedback_angle_w: 80.0 / e as f64,
            feedback_angle_d: 60.0 / e as f64,
            fraction_folds: f64::NAN,
            fraction_uncertified: f64::NAN,
            ..row(e)
        })
        .collect();
    let path = dir.path().join("fb.png");
    assert!(feedback_alignment(&kp, "kp", &path, FigureFormat::Png).unwrap());
    assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    keep_sample(&path);
    let other = dir.path().join("none.svg");
    assert!(!feedback_alignment(&[row(1), row(2)], "di", &other, FigureFormat::Svg).unwrap());
    assert!(!other.exists());
}

#[test]
fn stability_is_drawn_when_diagnostics_were_measured_only() {
    let dir = tempfile::tempdir().unwrap();
    // Stability being lost: the spectral abscissa crosses 0, free solves fail, basins switch;
    // epoch 4's diagnostics could not be computed (NaN, skipped).
    let measured: Vec<EpochMetrics> = (1..=5)
        .map(|e| {
            let t = e as f64;
            let nan_if_4 = |v: f64| if e == 4 { f64::NAN } else { v };
            EpochMetrics {
                diagnostics: EpochDiagnostics {
                    fraction_basin_switch: nan_if_4(0.05 * (t - 1.0)),
                    fraction_free_converged: 1.0 - 0.1 * (t - 1.0),
                    free_spectral_abscissa: nan_if_4(-0.4 + 0.12 * t),
                    alignment_cosine: nan_if_4(0.95 - 0.1 * t),
                    diagnostics_failed: usize::from(e == 4) * 64,
                    failure: String::new(),
                },
                ..row(e)
            }
        })
        .collect();
    for format in FORMATS {
        let path = dir.path().join(format!("stability.{}", format.extension()));
        assert!(stability(&measured, "lcp-di", &path, format).unwrap());
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
        if format == FigureFormat::Png {
            assert_eq!(std::fs::read(&path).unwrap()[..8], PNG_SIGNATURE);
            keep_sample(&path);
        }
    }
    let off = dir.path().join("off.png");
    assert!(!stability(&[row(1), row(2)], "off", &off, FigureFormat::Png).unwrap());
    assert!(!off.exists());
}

#[test]
fn all_nan_control_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<EpochMetrics> = (1..=3)
        .map(|e| EpochMetrics {
            train_loss: 1.0,
            ..row(e)
        })
        .collect();
    let path = dir.path().join("h.png");
    assert!(!control_magnitude(&rows, "rbp", &path, FigureFormat::Png).unwrap());
    assert!(!control_magnitude(&[], "none", &path, FigureFormat::Svg).unwrap());
    assert_dir_holds(dir.path(), &[]);
}

#[test]
fn empty_metrics_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.png");
    for result in [
        learning_curves(&[], "", &path, FigureFormat::Png),
        solver_statistics(&[], "", &path, FigureFormat::Png),
    ] {
        assert!(matches!(result, Err(LcsimError::InvalidValue { .. })));
    }
    assert_dir_holds(dir.path(), &[]);
}

#[test]
fn degenerate_trajectories_are_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let panels = vec![
        (
            "constant".to_string(),
            "rate".to_string(),
            vec![Series::new("flat", vec![0.3; 3])],
        ),
        (
            "missing".to_string(),
            "rate".to_string(),
            vec![
                Series::new("all NaN", vec![f64::NAN; 3]),
                Series::new("one point", vec![f64::NAN, 2.0, f64::INFINITY]),
            ],
        ),
        ("empty".to_string(), "none".to_string(), vec![]),
    ];
    let times = [0.0, 1.0, 2.0];
    for format in FORMATS {
        let p = target(dir.path(), "degenerate_traj", format);
        // Marker outside the time range: ignored.
        trajectories(&times, &panels, Some((50.0, "late")), "", &p, format).unwrap();
        check_figure(
            &p,
            format,
            trajectories_size(3, false),
            &[TIME_LABEL, "flat", "one point"],
        );
        if format == FigureFormat::Svg {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                !text.contains("all NaN"),
                "series without finite values is skipped"
            );
            assert!(!text.contains("late"));
        }
        // One time point, NaN time and marker exactly at it.
        let p = target(dir.path(), "single_time", format);
        let one = vec![(
            "one".to_string(),
            "v".to_string(),
            vec![Series::new("v", vec![1.0])],
        )];
        trajectories(&[5.0], &one, Some((5.0, "now")), "single", &p, format).unwrap();
        check_figure(&p, format, trajectories_size(1, true), &["now"]);
        let p = target(dir.path(), "nan_time", format);
        let two = vec![(
            "two".to_string(),
            "v".to_string(),
            vec![Series::new("v", vec![1.0, 2.0])],
        )];
        trajectories(
            &[f64::NAN, 1.0],
            &two,
            Some((f64::NAN, "nan")),
            "",
            &p,
            format,
        )
        .unwrap();
        check_figure(&p, format, trajectories_size(1, false), &["v"]);
    }
    // Many series: colours cycle (dashed on the second round), labels are shortened to fit.
    let many: Vec<Series> = (0..20)
        .map(|i| {
            Series::new(
                format!("a rather long series label number {i} that will not fit"),
                vec![i as f64, i as f64 + 1.0, i as f64 - 1.0],
            )
        })
        .collect();
    let p = dir.path().join("many.png");
    trajectories(
        &times,
        &[("many".into(), "v".into(), many)],
        None,
        "t",
        &p,
        FigureFormat::Png,
    )
    .unwrap();
    check_figure(&p, FigureFormat::Png, trajectories_size(1, true), &[]);
}

#[test]
fn trajectory_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.png");
    let bad = vec![(
        "p".to_string(),
        "y".to_string(),
        vec![Series::new("short", vec![1.0])],
    )];
    let r = trajectories(&[0.0, 1.0], &bad, None, "", &p, FigureFormat::Png);
    assert!(matches!(r, Err(LcsimError::Shape { .. })), "{r:?}");
    let r = trajectories(&[0.0, 1.0], &[], None, "", &p, FigureFormat::Png);
    assert!(matches!(r, Err(LcsimError::InvalidValue { .. })), "{r:?}");
    let r = trajectories(&[], &bad, None, "", &p, FigureFormat::Png);
    assert!(matches!(r, Err(LcsimError::InvalidValue { .. })), "{r:?}");
    assert_dir_holds(dir.path(), &[]);
}

#[test]
fn missing_directory_is_an_io_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no_such_dir");
    let (times, panels) = trajectory_panels(10);
    for format in FORMATS {
        let path = target(&missing, "fig", format);
        let results = [
            learning_curves(&realistic(), "t", &path, format),
            solver_statistics(&realistic(), "t", &path, format),
            control_magnitude(&realistic(), "t", &path, format).map(|_| ()),
            trajectories(&times, &panels, None, "t", &path, format),
        ];
        for r in results {
            match r {
                Err(LcsimError::Io { path: p, source }) => {
                    assert_eq!(p, path);
                    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
                }
                other => panic!("expected an I/O error, got {other:?}"),
            }
            assert!(!path.exists());
        }
    }
    assert!(!missing.exists());
    assert_dir_holds(dir.path(), &[]);
}

#[test]
fn failed_rename_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // The target is a non-empty directory: rendering succeeds, the rename fails.
    let blocked = dir.path().join("blocked.png");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    for format in FORMATS {
        let r = learning_curves(&realistic(), "t", &blocked, format);
        assert!(
            matches!(&r, Err(LcsimError::Io { path, .. }) if path == &blocked),
            "{r:?}"
        );
    }
    assert_dir_holds(dir.path(), &[&blocked]);
    assert!(blocked.join("keep").exists());
}

#[test]
fn existing_figure_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.svg");
    std::fs::write(&path, b"old").unwrap();
    learning_curves(&realistic(), "new", &path, FigureFormat::Svg).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("<svg") && text.contains("new"));
    // A file without the conventional extension is written in the requested format.
    let odd = dir.path().join("curves.figure");
    learning_curves(&realistic(), "", &odd, FigureFormat::Png).unwrap();
    assert_eq!(png_size(&std::fs::read(&odd).unwrap()), TWO_PANEL_SIZE);
    assert_dir_holds(dir.path(), &[&path, &odd]);
}

#[test]
fn figures_can_be_drawn_from_several_threads() {
    let dir = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        for i in 0..4 {
            let d = dir.path();
            s.spawn(move || {
                let p = d.join(format!("c{i}.png"));
                learning_curves(&realistic(), "t", &p, FigureFormat::Png).unwrap();
                assert_eq!(png_size(&std::fs::read(&p).unwrap()), TWO_PANEL_SIZE);
            });
        }
    });
}
