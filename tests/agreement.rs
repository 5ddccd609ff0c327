//! `lcsim agree` (issue 13 item 1): the solver's controlled equilibrium against its
//! definition's reference, on a trained run. A sample the solver calls converged but that is
//! not the reference's equilibrium is "silent" and fails the command.

mod common;

use common::{lcsim, stderr};
use lcsim::studies::agreement::relative_distance;
use nalgebra::DMatrix;
use std::path::Path;

/// A small trained LCP-DI run on the digits (1 epoch, 16 hidden units).
fn trained_run(dir: &Path) -> std::path::PathBuf {
    let o = lcsim(&[
        "train",
        "--quiet",
        "--set",
        &format!("output.dir=\"{}\"", dir.display()),
        "--set",
        "output.name=\"di\"",
        "--set",
        "output.figures=false",
        "--set",
        "model.hidden=[16]",
        "--set",
        "training.epochs=1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    dir.join("di")
}

fn agree(run: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "agree",
        "--run",
        run.to_str().unwrap(),
        "--samples",
        "24",
        "--alphas",
        "0.1,1",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    lcsim(&args)
}

fn json(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("agreement.json")).unwrap()).unwrap()
}

#[test]
fn relative_distance_is_the_certificate_distance() {
    let a = DMatrix::from_column_slice(3, 1, &[1.0, -2.0, 0.0]);
    let b = DMatrix::from_column_slice(3, 1, &[1.5, -2.0, 1.0]);
    // max(0.5 / 2.5, 0, 1 / 2) = 0.5
    assert_eq!(relative_distance(&a, &b), 0.5);
    let nan = DMatrix::from_column_slice(3, 1, &[f64::NAN, 0.0, 0.0]);
    assert_eq!(relative_distance(&nan, &b), f64::INFINITY);
}

#[test]
fn default_solver_agrees_with_both_references_and_a_loose_one_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run(tmp.path());

    // The default solver (Anderson with the flow certificate) on the trained net.
    let out = tmp.path().join("agree");
    let o = agree(&run, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&out);
    let rows = j["result"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2, "two alphas x two definitions");
    for r in rows {
        assert_eq!(r["silent"], 0, "{r}");
        let compared = r["samples"].as_u64().unwrap() - r["no_reference"].as_u64().unwrap();
        assert!(compared >= 20, "{r}");
        assert!(r["fraction_agrees"].as_f64().unwrap() >= 0.995, "{r}");
        assert!(r["max_agreeing_distance"].as_f64().unwrap() <= 1e-3, "{r}");
    }
    assert_eq!(j["result"]["definitions"].as_array().unwrap().len(), 2);
    let csv = std::fs::read_to_string(out.join("agreement.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 2 * 24);
    assert!(csv.starts_with("run,alpha,definition,sample,verdict,distance,"));

    // A loose stop test without the certificate, judged at a tight tolerance: the
    // accelerated solver's point is not the flow's, and it said "converged".
    let loose = tmp.path().join("loose");
    let o = agree(
        &run,
        &loose,
        &[
            "--definitions",
            "flow",
            "--tolerance",
            "1e-9",
            "--set",
            "solver.atol=1e-2",
            "--set",
            "solver.rtol=0.0",
            "--set",
            "solver.certify_flow=false",
        ],
    );
    assert!(!o.status.success(), "silent disagreements must fail");
    assert!(stderr(&o).contains("silent"), "{}", stderr(&o));
    let j = json(&loose);
    let silent: u64 = j["result"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["silent"].as_u64().unwrap())
        .sum();
    assert!(silent > 0);
    let csv = std::fs::read_to_string(loose.join("agreement.csv")).unwrap();
    assert!(csv.lines().any(|l| l.contains(",silent,")));
}

#[test]
fn agree_rejects_bad_input_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let missing = tmp.path().join("nothing");
    let o = agree(&missing, &out, &[]);
    assert!(!o.status.success());
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    let run = trained_run(tmp.path());
    for (extra, want) in [
        (vec!["--tolerance", "0"], "--tolerance"),
        (vec!["--samples", "0"], "--samples"),
        (vec!["--samples", "100000"], "--samples"),
        (vec!["--alphas", "0"], "--alphas"),
    ] {
        let mut args = vec!["agree", "--run", run.to_str().unwrap()];
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(&extra);
        let o = lcsim(&args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{extra:?}");
        assert!(
            e.contains(want) && !e.contains("panicked"),
            "{extra:?}: {e}"
        );
    }
}
