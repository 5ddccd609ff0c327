//! metrics.csv (grown only by appended columns), alignment.csv and trajectories.csv stay byte for byte what they were, and
//! metrics.csv reads back as before (values and error messages): against fixtures written by
//! the original hand-written writers and reader. metrics.csv's fixtures were regenerated when
//! columns were appended (issue 13: fraction_folds and fraction_uncertified, then the five
//! diagnostics, then issue 17's eight unconverged-reason counts): the first 22 columns of every
//! row, and the reading of 13-, 15-, 17- and 22-column tables (no reasons: NaN), are unchanged.

use lcsim::io::metrics::{read_csv, to_csv, EpochDiagnostics, EpochMetrics, UnconvergedReasons};
use lcsim::learn::variant::Method;
use lcsim::studies::alignment::{alignment_csv, AlignmentCurve, AlignmentPoint};
use lcsim::studies::simulate::{SampleTrajectory, Simulation};
use lcsim::studies::simulate_write::trajectories_csv;
use lcsim::system::loss::Loss;
use nalgebra::DMatrix;

/// Numbers that exercise the formatting: exponents, NaN, infinities, signed zero.
const NUMBERS: [f64; 12] = [
    0.9375,
    1.0,
    1e-7,
    1e21,
    f64::NAN,
    -0.0,
    f64::INFINITY,
    0.30000000000000004,
    123456.789,
    f64::MIN_POSITIVE,
    -1.5e-300,
    f64::NEG_INFINITY,
];

fn number(i: usize) -> f64 {
    NUMBERS[i % NUMBERS.len()]
}

fn assert_fixture(text: &str, path: &str) {
    let fixture = std::fs::read(path).expect("the fixture is there");
    assert!(
        text.as_bytes() == fixture.as_slice(),
        "{path} changed:\n--- now ---\n{text}\n--- fixture ---\n{}",
        String::from_utf8_lossy(&fixture)
    );
}

fn metrics_rows() -> Vec<EpochMetrics> {
    (0..5)
        .map(|i| EpochMetrics {
            epoch: i + 1,
            train_loss: number(i),
            train_accuracy: number(i + 1),
            test_loss: number(i + 2),
            test_accuracy: number(i + 3),
            mean_h: number(i + 4),
            mean_steps: number(i + 5),
            max_steps: 1e3 * i as f64,
            fraction_unconverged: number(i + 6),
            fraction_free_unconverged: number(i + 7),
            skipped_samples: 3 * i,
            learning_rate: number(i + 8),
            wall_time_s: number(i + 9),
            feedback_angle_w: number(i + 10),
            feedback_angle_d: number(i + 11),
            fraction_folds: number(i + 12),
            fraction_uncertified: number(i + 13),
            diagnostics: EpochDiagnostics {
                fraction_basin_switch: number(i + 14),
                fraction_free_converged: number(i + 15),
                free_spectral_abscissa: number(i + 16),
                alignment_cosine: number(i + 17),
                diagnostics_failed: 2 * i,
                failure: String::new(),
            },
            // The last row's reasons not recorded (NaN cells).
            unconverged: (i < 4).then_some(UnconvergedReasons {
                diverged: i,
                max_steps: 2 * i,
                max_time: 4 - i,
                max_iterations: 10 * i,
                unstable: i + 1,
                off_branch: 3 * i,
                other: usize::from(i == 2),
                free: 5 * i,
            }),
        })
        .collect()
}

#[test]
fn metrics_csv_bytes_match_the_fixture() {
    assert_fixture(&to_csv(&metrics_rows()), "tests/data/metrics.csv");
}

/// What the reader makes of a table: the rows (Debug, NaN-safe) or the error message.
fn read_report(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("lcsim-csv-formats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let shown = match read_csv(&path) {
        Ok(rows) => format!("{rows:?}"),
        Err(e) => e.to_string().replace(&dir.display().to_string(), "DIR"),
    };
    format!("== {name}\n{shown}\n")
}

#[test]
fn metrics_csv_reads_as_before() {
    let full = to_csv(&metrics_rows());
    let header = full.lines().next().unwrap().to_string();
    let first = |n: usize| header.split(',').take(n).collect::<Vec<_>>().join(",");
    let (old_header, feedback_header, branch_header) = (first(13), first(15), first(17));
    let diagnostics_header = first(22);
    let row = |n: usize| {
        (0..n)
            .map(|c| format!("{}", c as f64 + 0.5))
            .collect::<Vec<_>>()
            .join(",")
    };
    let cases: Vec<(&str, String)> = vec![
        ("full.csv", full.clone()),
        ("crlf.csv", full.replace('\n', "\r\n")),
        (
            "blank-lines.csv",
            format!("{header}\n\n{}\n   \n{}\n", row(30), row(30)),
        ),
        (
            "spaces.csv",
            format!("{header}\n{}\n", row(30).replace(',', " , ")),
        ),
        ("old-columns.csv", format!("{old_header}\n{}\n", row(13))),
        (
            "feedback-columns.csv",
            format!("{feedback_header}\n{}\n", row(15)),
        ),
        (
            "branch-columns.csv",
            format!("{branch_header}\n{}\n", row(17)),
        ),
        (
            "diagnostics-columns.csv",
            format!("{diagnostics_header}\n{}\n", row(22)),
        ),
        ("no-trailing-newline.csv", format!("{header}\n{}", row(30))),
        ("header-only.csv", format!("{header}\n")),
        ("empty.csv", String::new()),
        ("blank-first-line.csv", format!("\n{header}\n{}\n", row(30))),
        ("bad-header.csv", format!("epoch,loss\n{}\n", row(2))),
        (
            "bad-cell.csv",
            format!("{header}\n{}\n{},x\n", row(30), row(29)),
        ),
        ("empty-cell.csv", format!("{header}\n{},\n", row(29))),
        ("short-row.csv", format!("{header}\n\n{}\n", row(29))),
        ("long-row.csv", format!("{header}\n{}\n", row(31))),
        (
            "old-header-new-row.csv",
            format!("{old_header}\n{}\n", row(30)),
        ),
        (
            "feedback-header-new-row.csv",
            format!("{feedback_header}\n{}\n", row(30)),
        ),
        (
            "diagnostics-header-new-row.csv",
            format!("{diagnostics_header}\n{}\n", row(30)),
        ),
    ];
    let report: String = cases
        .iter()
        .map(|(name, text)| read_report(name, text))
        .collect();
    assert_fixture(&report, "tests/data/metrics_read.txt");
}

fn curves() -> Vec<AlignmentCurve> {
    let point = |i: usize| AlignmentPoint {
        alpha: number(i),
        beta: number(i + 1),
        cosine: number(i + 2),
        norm_ratio: number(i + 3),
        update_norm: number(i + 4),
        gradient_norm: number(i + 5),
        h: number(i + 6),
        converged: i,
        solves: 2 * i,
        samples_used: i + 1,
        max_residual: number(i + 7),
        mean_steps: number(i + 8),
    };
    vec![
        AlignmentCurve {
            network: "untrained".into(),
            variant: Method::LcpDi,
            samples: 4,
            free_converged: 4,
            adjoint_converged: 3,
            gradient_norm: 0.5,
            points: (0..4).map(point).collect(),
        },
        AlignmentCurve {
            network: "trained".into(),
            variant: Method::LcpKp,
            samples: 8,
            free_converged: 7,
            adjoint_converged: 8,
            gradient_norm: 1e-9,
            points: (4..9).map(point).collect(),
        },
    ]
}

#[test]
fn alignment_csv_bytes_match_the_fixture() {
    assert_fixture(&alignment_csv(&curves()), "tests/data/alignment.csv");
}

fn simulation() -> Simulation {
    let (n_h, n_y, t) = (3, 2, 4);
    let matrix =
        |rows: usize, start: usize| DMatrix::from_fn(rows, t, |r, c| number(start + r * t + c));
    let vector = |start: usize| (0..t).map(|k| number(start + k)).collect::<Vec<f64>>();
    let trajectory = |s: usize| SampleTrajectory {
        v: matrix(n_h, s),
        y: matrix(n_y, s + 1),
        u_i: matrix(n_y, s + 2),
        u: matrix(n_y, s + 3),
        e: matrix(n_h, s + 4),
        psi_norm: vector(s + 5),
        e_norm: vector(s + 6),
        u_norm: vector(s + 7),
        loss: vector(s + 8),
        free: None,
        controlled: None,
    };
    Simulation {
        times: vec![0.0, 0.5, 1e-7, 1e21],
        t_on: 0.5,
        switch_index: 1,
        samples: vec![7, 0],
        labels: vec![1, 0],
        loss: std::sync::Arc::new(Loss::CrossEntropy),
        loss_scale: 1.0,
        trajectories: vec![trajectory(0), trajectory(5)],
        feedback: None,
        feature_maps: Vec::new(),
    }
}

#[test]
fn trajectories_csv_bytes_match_the_fixture() {
    assert_fixture(
        &trajectories_csv(&simulation()),
        "tests/data/trajectories.csv",
    );
}

#[test]
fn csv_text_quotes_only_commas_quotes_and_line_breaks() {
    let text = lcsim::io::csv_text::csv_text(
        ["a", "b,c"],
        [[
            "plain 1e-7".to_string(),
            "x\"y".into(),
            "two\nlines".into(),
            "cr\r".into(),
            String::new(),
        ]],
    );
    assert_eq!(
        text,
        "a,\"b,c\"\nplain 1e-7,\"x\"\"y\",\"two\nlines\",\"cr\r\",\n"
    );
}

#[test]
fn csv_text_writes_the_given_header_once_for_struct_rows() {
    #[derive(serde::Serialize)]
    struct Row {
        name: String,
        value: String,
    }
    let rows = [("a", "1"), ("b", "2e-7")].map(|(n, v)| Row {
        name: n.into(),
        value: v.into(),
    });
    let text = lcsim::io::csv_text::csv_text(["run", "mean_h"], rows);
    assert_eq!(text, "run,mean_h\na,1\nb,2e-7\n");
}
