//! `lcsim sweep` as a user runs it: plan, run (parallel, skip, kill and resume, one index,
//! SLURM_ARRAY_TASK_ID), slurm script, collect, and bad input. Tiny XOR runs of one epoch.

mod common;

use common::lcsim_in;
use lcsim::sweep::{array_ranges, log_axis, parse_job_id, run_id, Manifest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Fixed settings of every test sweep: XOR, one epoch, no figures, a small net.
const TINY: [&str; 8] = [
    "--set",
    "data.source=\"xor\"",
    "--set",
    "training.epochs=1",
    "--set",
    "output.figures=false",
    "--set",
    "data.train_limit=64",
];

/// `lcsim sweep plan` with the tiny settings, `extra` and `--out out`; asserts success.
fn plan(dir: &Path, out: &str, extra: &[&str]) -> Manifest {
    let mut args = vec!["sweep", "plan"];
    args.extend(TINY);
    args.extend(extra);
    args.extend(["--out", out]);
    let o = lcsim_in(dir, &args);
    assert!(o.status.success(), "{}", text(&o));
    manifest(&dir.join(out))
}

fn manifest(sweep: &Path) -> Manifest {
    serde_json::from_str(&std::fs::read_to_string(sweep.join("manifest.json")).unwrap()).unwrap()
}

fn summary(sweep: &Path, id: &str) -> PathBuf {
    sweep.join("runs").join(id).join("summary.json")
}

fn attempts(sweep: &Path, id: &str) -> usize {
    std::fs::read_to_string(sweep.join("logs").join(format!("{id}.log")))
        .map(|t| t.matches("=== lcsim sweep: attempt").count())
        .unwrap_or(0)
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn plan_writes_the_cartesian_product_with_stable_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = [
        "--grid",
        "controller.alpha=0.1,1",
        "--grid",
        "model.hidden=4,[8],16",
    ];
    let m = plan(tmp.path(), "a", &grid);
    assert_eq!(m.keys, ["controller.alpha", "model.hidden"]);
    assert_eq!(m.runs.len(), 6);
    let points: Vec<(String, String)> = m
        .runs
        .iter()
        .map(|r| {
            (
                r.overrides["controller.alpha"].clone(),
                r.overrides["model.hidden"].clone(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("0.1", "[4]"),
        ("0.1", "[8]"),
        ("0.1", "[16]"),
        ("1", "[4]"),
        ("1", "[8]"),
        ("1", "[16]"),
    ]
    .iter()
    .map(|(a, h)| (a.to_string(), h.to_string()))
    .collect();
    assert_eq!(points, expected, "first grid key varies slowest");
    for (i, r) in m.runs.iter().enumerate() {
        assert_eq!(r.index, i);
        assert!(r.id.starts_with(&format!("{i:04}-")), "{}", r.id);
        assert_eq!(r.seeds.model, 0);
        // The run's config: base + overrides, output inside the sweep folder.
        let config = lcsim::config::Config::load(
            Some(&tmp.path().join("a/configs").join(format!("{}.toml", r.id))),
            &[],
        )
        .unwrap();
        assert_eq!(
            config.controller.alpha,
            r.overrides["controller.alpha"].parse::<f64>().unwrap()
        );
        assert_eq!(config.data.source, lcsim::data::DataSource::Xor);
        assert_eq!(config.output.name, r.id);
        assert_eq!(config.output.dir, tmp.path().join("a/runs"));
    }
    assert!(tmp.path().join("a/base.toml").is_file());
    // The same plan again: the same ids; the ids are also what run_id gives.
    let again = plan(tmp.path(), "b", &grid);
    let ids = |m: &Manifest| m.runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&m), ids(&again));
    assert_eq!(m.runs[4].id, run_id(4, 6, &m.runs[4].overrides));
    // Distinct overrides give distinct hashes.
    let hashes: std::collections::HashSet<&str> = m.runs.iter().map(|r| &r.id[5..]).collect();
    assert_eq!(hashes.len(), 6);
    // A folder holding a sweep is not planned over.
    let mut args = vec![
        "sweep",
        "plan",
        "--grid",
        "controller.alpha=0.1",
        "--out",
        "a",
    ];
    args.extend(TINY);
    let o = lcsim_in(tmp.path(), &args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--out"), "{}", text(&o));
}

#[test]
fn random_samples_are_seeded_and_in_range() {
    let tmp = tempfile::tempdir().unwrap();
    let args = |seed: &'static str| {
        [
            "--grid",
            "controller.k_i=1,2",
            "--random",
            "20",
            "--range",
            "controller.alpha=0.001:1:log",
            "--range",
            "training.batch_size=8:64",
            "--seed",
            seed,
        ]
    };
    let m = plan(tmp.path(), "a", &args("3"));
    assert_eq!(m.runs.len(), 40, "20 samples per grid point");
    assert_eq!(
        m.keys,
        ["controller.k_i", "controller.alpha", "training.batch_size"]
    );
    let alphas: Vec<f64> = m
        .runs
        .iter()
        .map(|r| r.overrides["controller.alpha"].parse().unwrap())
        .collect();
    assert!(
        alphas.iter().all(|a| (0.001..=1.0).contains(a)),
        "{alphas:?}"
    );
    // Log-uniform: about a third of the samples in each decade, so some below 0.01.
    let below = alphas.iter().filter(|&&a| a < 0.01).count();
    assert!((3..=25).contains(&below), "{alphas:?}");
    for r in &m.runs {
        let b: i64 = r.overrides["training.batch_size"]
            .parse()
            .expect("an integer");
        assert!((8..=64).contains(&b));
    }
    assert_eq!(m.runs[0].overrides["controller.k_i"], "1");
    assert_eq!(m.runs[20].overrides["controller.k_i"], "2");
    let same = plan(tmp.path(), "b", &args("3"));
    assert_eq!(m.runs, same.runs, "same seed, same samples");
    let other = plan(tmp.path(), "c", &args("4"));
    assert_ne!(m.runs, other.runs, "another seed, other samples");
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["--grid", "controller.alfa=0.1,1"],
            &["controller.alfa", "controller.alpha"],
        ),
        (
            vec!["--grid", "controller.alpha=0.1,abc"],
            &["controller.alpha", "abc"],
        ),
        (
            vec!["--grid", "controller.alpha=0.1,-1"],
            &["controller.alpha", "-1"],
        ),
        (vec!["--grid", "model.hidden=4,x"], &["model.hidden"]),
        (
            vec![
                "--grid",
                "controller.alpha=0.1,1",
                "--grid",
                "controller.alpha=2",
            ],
            &["controller.alpha", "one --grid"],
        ),
        (
            vec!["--grid", "controller.alpha=0.1,0.1"],
            &["controller.alpha", "distinct"],
        ),
        (
            vec!["--grid", "controller.alpha="],
            &["controller.alpha", "non-empty"],
        ),
        (
            vec!["--grid", "controller.alpha=0.1,,1"],
            &["controller.alpha"],
        ),
        (vec!["--grid", "output.name=a,b"], &["output.name"]),
        (vec!["--grid", "controller"], &["--grid", "key=v1,v2"]),
        (
            vec!["--random", "3", "--range", "controller.alpha=1:0.1"],
            &["controller.alpha", "lo < hi"],
        ),
        (
            vec!["--random", "3", "--range", "controller.alpha=0.5:0.5"],
            &["controller.alpha", "lo < hi"],
        ),
        (
            vec!["--random", "3", "--range", "controller.alpha=0:1:log"],
            &["controller.alpha", "lo > 0"],
        ),
        (
            vec!["--random", "3", "--range", "controller.alpha=a:b"],
            &["controller.alpha"],
        ),
        (
            vec!["--random", "3", "--range", "method.name=0:1"],
            &["method.name", "numeric"],
        ),
        (
            vec!["--random", "3", "--range", "training.batch_size=0.2:0.7"],
            &["training.batch_size", "integer"],
        ),
        (vec!["--random", "3"], &["--range"]),
        (vec!["--range", "controller.alpha=0.1:1"], &["--random"]),
        (
            vec![
                "--grid",
                "controller.alpha=0.1",
                "--random",
                "2",
                "--range",
                "controller.alpha=0.1:1",
            ],
            &["controller.alpha"],
        ),
        (
            vec![
                "--grid",
                "controller.alpha=0.1,1",
                "--set",
                "controller.alpha=0.5",
            ],
            &["controller.alpha", "--set"],
        ),
        (vec![], &["--grid"]),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["sweep", "plan"];
        args.extend(TINY);
        args.extend(&extra);
        args.extend(["--out", "bad"]);
        let o = lcsim_in(tmp.path(), &args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        for n in needles {
            assert!(err.contains(n), "{extra:?}: `{n}` not in: {err}");
        }
        assert!(
            !tmp.path().join("bad").exists(),
            "{extra:?} wrote the folder"
        );
    }
}

#[test]
fn a_hand_edited_manifest_is_refused_before_any_run() {
    let tmp = tempfile::tempdir().unwrap();
    plan(tmp.path(), "s", &["--grid", "controller.alpha=0.1,1"]);
    let sweep = tmp.path().join("s");
    let path = sweep.join("manifest.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let m: Manifest = serde_json::from_str(&original).unwrap();
    let (id0, id1) = (m.runs[0].id.clone(), m.runs[1].id.clone());
    let edit = |f: &dyn Fn(&mut Manifest)| {
        let mut m: Manifest = serde_json::from_str(&original).unwrap();
        f(&mut m);
        std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
    };
    let refused = |needles: &[&str]| {
        for cmd in [
            vec!["sweep", "run", "s", "--jobs", "1"],
            vec!["sweep", "collect", "s"],
        ] {
            let o = lcsim_in(tmp.path(), &cmd);
            assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", text(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            for n in needles {
                assert!(err.contains(n), "`{n}` not in: {err}");
            }
        }
        assert!(!sweep.join("runs").exists(), "nothing ran");
    };
    // Overrides changed by hand: the id no longer matches.
    edit(&|m| {
        m.runs[0]
            .overrides
            .insert("controller.alpha".into(), "0.5".into());
    });
    refused(&[&id0, "id"]);
    // The same id twice.
    edit(&|m| m.runs[1].id = m.runs[0].id.clone());
    refused(&[&id0, "twice"]);
    // A run without a config file.
    std::fs::write(&path, &original).unwrap();
    let config = sweep.join("configs").join(format!("{id1}.toml"));
    let config_text = std::fs::read_to_string(&config).unwrap();
    std::fs::remove_file(&config).unwrap();
    refused(&[&id1, "missing"]);
    // A config whose value disagrees with the manifest: the key is named.
    std::fs::write(&config, config_text.replace("alpha = 1.0", "alpha = 2.0")).unwrap();
    refused(&[&id1, "controller.alpha"]);
    // A manifest that is not JSON; no manifest at all.
    std::fs::write(&path, "{ not json").unwrap();
    refused(&["manifest.json"]);
    let o = lcsim_in(tmp.path(), &["sweep", "run", "nowhere"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("lcsim sweep plan"), "{}", text(&o));
}

#[test]
fn run_does_every_run_once_and_skips_done_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let m = plan(
        tmp.path(),
        "s",
        &[
            "--grid",
            "controller.alpha=0.1,1",
            "--grid",
            "model.hidden=4,6",
        ],
    );
    let sweep = tmp.path().join("s");
    let o = lcsim_in(tmp.path(), &["sweep", "run", "s", "--jobs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("4 of 4 done in all"), "{}", text(&o));
    let times: Vec<_> = m
        .runs
        .iter()
        .map(|r| {
            let s = summary(&sweep, &r.id);
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&s).unwrap()).unwrap();
            assert_eq!(v["run"], r.id.as_str());
            assert_eq!(attempts(&sweep, &r.id), 1);
            mtime(&s)
        })
        .collect();
    let o = lcsim_in(tmp.path(), &["sweep", "run", "s", "--jobs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("0 of 4 runs to do"), "{}", text(&o));
    for (r, t) in m.runs.iter().zip(times) {
        assert_eq!(mtime(&summary(&sweep, &r.id)), t, "{} not rerun", r.id);
        assert_eq!(attempts(&sweep, &r.id), 1);
    }
}

#[test]
fn a_killed_sweep_completes_only_the_missing_runs() {
    let tmp = tempfile::tempdir().unwrap();
    // Runs of a few seconds, so the kill lands inside the sweep.
    let m = plan(
        tmp.path(),
        "s",
        &[
            "--set",
            "training.epochs=4",
            "--set",
            "data.train_limit=0",
            "--grid",
            "controller.alpha=0.1,0.2,0.3,0.4",
        ],
    );
    let sweep = tmp.path().join("s");
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lcsim"))
        .args(["sweep", "run", "s", "--jobs", "1"])
        .current_dir(tmp.path())
        .env_remove("SLURM_ARRAY_TASK_ID")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let done = |m: &Manifest| {
        m.runs
            .iter()
            .filter(|r| summary(&sweep, &r.id).is_file())
            .count()
    };
    // Wait for the first finished run (bounded, so a broken runner cannot hang the test).
    let mut waited = 0;
    while done(&m) == 0 && waited < 6000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    // SIGKILL to the whole process group: the sweep and its running `lcsim train`.
    let pgid = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-KILL", "--", &pgid])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = child.wait();
    let finished: Vec<_> = m
        .runs
        .iter()
        .filter(|r| summary(&sweep, &r.id).is_file())
        .map(|r| (r.id.clone(), mtime(&summary(&sweep, &r.id))))
        .collect();
    assert!(!finished.is_empty(), "a run finished before the kill");
    assert!(
        finished.len() < m.runs.len(),
        "the kill came before the end"
    );
    // An interrupted run folder (config.toml, no summary) is resumed, not started afresh.
    let interrupted: Vec<String> = m
        .runs
        .iter()
        .filter(|r| {
            let d = sweep.join("runs").join(&r.id);
            d.join("config.toml").is_file() && !d.join("summary.json").is_file()
        })
        .map(|r| r.id.clone())
        .collect();
    let o = lcsim_in(tmp.path(), &["sweep", "run", "s", "--jobs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "{} of 4 runs to do ({} done before)",
            4 - finished.len(),
            finished.len()
        )),
        "{}",
        text(&o)
    );
    assert_eq!(done(&m), 4, "every run done after the rerun");
    for (id, t) in &finished {
        assert_eq!(mtime(&summary(&sweep, id)), *t, "{id} was not rerun");
        assert_eq!(attempts(&sweep, id), 1, "{id} ran once");
    }
    for id in &interrupted {
        let log = std::fs::read_to_string(sweep.join("logs").join(format!("{id}.log"))).unwrap();
        let last = log.rsplit("=== lcsim sweep: attempt").next().unwrap();
        assert!(last.contains("--resume"), "{id} resumed: {log}");
    }
    // Every summary is a complete run of 4 epochs.
    for r in &m.runs {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(summary(&sweep, &r.id)).unwrap())
                .unwrap();
        assert_eq!(v["epochs"], 4);
    }
}

#[test]
fn index_and_slurm_array_task_id_run_exactly_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let m = plan(tmp.path(), "s", &["--grid", "controller.alpha=0.1,0.3,1"]);
    let sweep = tmp.path().join("s");
    let o = lcsim_in(tmp.path(), &["sweep", "run", "s", "--index", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let is_done: Vec<bool> = m
        .runs
        .iter()
        .map(|r| summary(&sweep, &r.id).is_file())
        .collect();
    assert_eq!(is_done, [false, true, false]);
    let o = Command::new(env!("CARGO_BIN_EXE_lcsim"))
        .args(["sweep", "run", "s"])
        .current_dir(tmp.path())
        .env("SLURM_ARRAY_TASK_ID", "2")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let is_done: Vec<bool> = m
        .runs
        .iter()
        .map(|r| summary(&sweep, &r.id).is_file())
        .collect();
    assert_eq!(is_done, [false, true, true]);
    // A done run is skipped.
    let o = lcsim_in(tmp.path(), &["sweep", "run", "s", "--index", "1"]);
    assert!(o.status.success());
    assert!(text(&o).contains("already done"), "{}", text(&o));
    assert_eq!(attempts(&sweep, &m.runs[1].id), 1);
    // Out of range, or not an index.
    let o = lcsim_in(tmp.path(), &["sweep", "run", "s", "--index", "3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("--index") && text(&o).contains("0..=2"),
        "{}",
        text(&o)
    );
    for bad in ["x", "7"] {
        let o = Command::new(env!("CARGO_BIN_EXE_lcsim"))
            .args(["sweep", "run", "s"])
            .current_dir(tmp.path())
            .env("SLURM_ARRAY_TASK_ID", bad)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("SLURM_ARRAY_TASK_ID"), "{}", text(&o));
    }
    assert!(!summary(&sweep, &m.runs[0].id).exists());
}

#[test]
fn failed_runs_are_recorded_and_collect_lists_missing_ones() {
    let tmp = tempfile::tempdir().unwrap();
    // The mnist run fails at run time (no such folder); the sweep goes on.
    let mut args = vec!["sweep", "plan"];
    args.extend(TINY.iter().skip(2));
    args.extend([
        "--set",
        "data.mnist_dir=\"/nonexistent/mnist\"",
        "--grid",
        "data.source=xor,mnist,two-moons",
        "--grid",
        "controller.alpha=0.1,1",
        "--out",
        "s",
    ]);
    let o = lcsim_in(tmp.path(), &args);
    assert!(o.status.success(), "{}", text(&o));
    let m = manifest(&tmp.path().join("s"));
    let sweep = tmp.path().join("s");
    let ids: Vec<&str> = m.runs.iter().map(|r| r.id.as_str()).collect();
    // Runs 0..=3: xor (2) and mnist (2); two-moons stays missing.
    for i in ["0", "2"] {
        let o = lcsim_in(tmp.path(), &["sweep", "run", "s", "--index", i]);
        assert_eq!(
            o.status.code(),
            Some(if i == "2" { 1 } else { 0 }),
            "{}",
            text(&o)
        );
    }
    let error = std::fs::read_to_string(sweep.join("runs").join(ids[2]).join("error.txt")).unwrap();
    assert!(error.contains("exit code 2"), "{error}");
    assert!(error.contains("/nonexistent/mnist"), "{error}");
    let o = lcsim_in(tmp.path(), &["sweep", "collect", "s"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("1 of 6 runs done"), "{out}");
    for (status, id) in [("missing", ids[1]), ("failed", ids[2]), ("missing", ids[4])] {
        assert!(
            out.lines().any(|l| l.contains(status) && l.contains(id)),
            "{status} {id} listed: {out}"
        );
    }
    let csv = std::fs::read_to_string(sweep.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 7, "a row per run: {csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(
        &header[..6],
        [
            "run_id",
            "index",
            "status",
            "data.source",
            "controller.alpha",
            "epochs"
        ]
    );
    for col in [
        "final_test_accuracy",
        "final_test_loss",
        "final_mean_h",
        "fraction_converged",
        "error",
    ] {
        assert!(header.contains(&col), "{col}");
    }
    let row = |i: usize| -> BTreeMap<&str, &str> {
        header
            .iter()
            .copied()
            .zip(lines[i + 1].split(','))
            .collect()
    };
    let done = row(0);
    assert_eq!(
        (
            done["status"],
            done["data.source"],
            done["controller.alpha"]
        ),
        ("done", "xor", "0.1")
    );
    assert_eq!(done["epochs"], "1");
    let acc: f64 = done["final_test_accuracy"].parse().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary(&sweep, ids[0])).unwrap()).unwrap();
    assert_eq!(acc, summary["final_test_accuracy"].as_f64().unwrap());
    assert_eq!(done["fraction_converged"].parse::<f64>().unwrap(), 1.0);
    assert_eq!(row(1)["status"], "missing");
    assert_eq!(row(1)["final_test_accuracy"], "");
    assert_eq!(row(2)["status"], "failed");
    assert!(lines[3].contains("exit code 2"), "{}", lines[3]);
    // Figures: a heatmap over (data.source, alpha) and lines against... the first key is
    // not numeric, so only the heatmaps.
    let figures: Vec<String> = std::fs::read_dir(sweep.join("figures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        figures
            .iter()
            .any(|f| f.starts_with("final_test_accuracy-source-alpha")),
        "{figures:?}"
    );
    // The whole sweep: the failed run fails again, the others are done, exit code 1.
    let o = lcsim_in(tmp.path(), &["sweep", "run", "s", "--jobs", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("FAILED"), "{}", text(&o));
    let o = lcsim_in(
        tmp.path(),
        &[
            "sweep",
            "collect",
            "s",
            "--x",
            "controller.alpha",
            "--format",
            "svg",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("4 of 6 runs done"), "{}", text(&o));
    assert!(sweep
        .join("figures/fraction_converged-vs-alpha.svg")
        .is_file());
    assert!(sweep
        .join("figures/final_test_accuracy-alpha-source.svg")
        .is_file());
    for (args, field) in [
        (vec!["--metric", "accuracy"], "--metric"),
        (vec!["--x", "model.hidden"], "--x"),
    ] {
        let mut cmd = vec!["sweep", "collect", "s"];
        cmd.extend(args);
        let o = lcsim_in(tmp.path(), &cmd);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(field), "{}", text(&o));
    }
}

#[test]
fn slurm_script_covers_the_pending_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let m = plan(
        tmp.path(),
        "s",
        &["--grid", "controller.alpha=0.1,0.2,0.3,0.4,0.5"],
    );
    let sweep = tmp.path().join("s");
    let slurm = |extra: &[&str]| {
        let mut args = vec!["sweep", "slurm", "s"];
        args.extend(extra);
        lcsim_in(tmp.path(), &args)
    };
    let o = slurm(&[
        "--partition",
        "short",
        "--time",
        "1:00:00",
        "--cpus-per-task",
        "2",
        "--max-parallel",
        "3",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let script = std::fs::read_to_string(sweep.join("slurm/sweep.sbatch")).unwrap();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_lcsim")).unwrap();
    let logs = sweep.join("slurm/logs");
    for line in [
        "#!/bin/bash".to_string(),
        "#SBATCH --array=0-4%3".into(),
        "#SBATCH --partition=short".into(),
        "#SBATCH --time=1:00:00".into(),
        "#SBATCH --cpus-per-task=2".into(),
        format!("#SBATCH --output={}/%A_%a.out", logs.display()),
        format!("#SBATCH --chdir={}", m.workdir.display()),
        format!("exec {} sweep run {}", exe.display(), sweep.display()),
    ] {
        assert!(script.lines().any(|l| l == line), "`{line}` in:\n{script}");
    }
    assert!(logs.is_dir());
    // Done runs are left out of the array.
    for i in ["0", "2"] {
        assert!(lcsim_in(tmp.path(), &["sweep", "run", "s", "--index", i])
            .status
            .success());
    }
    assert!(slurm(&[]).status.success());
    let script = std::fs::read_to_string(sweep.join("slurm/sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=1,3-4\n"), "{script}");
    assert!(!script.contains("--partition"));
    // Bad settings, and no sbatch on the PATH.
    for (args, field) in [
        (vec!["--time", "1h"], "--time"),
        (vec!["--max-parallel", "0"], "--max-parallel"),
        (vec!["--cpus-per-task", "0"], "--cpus-per-task"),
        (vec!["--partition", "a b"], "--partition"),
    ] {
        let o = slurm(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(field), "{}", text(&o));
    }
    let empty = tmp.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lcsim"))
        .args(["sweep", "slurm", "s", "--submit"])
        .current_dir(tmp.path())
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("sbatch not found"), "{}", text(&o));
}

#[test]
fn helpers() {
    assert_eq!(parse_job_id("Submitted batch job 4242\n"), Some(4242));
    assert_eq!(parse_job_id("sbatch: error: invalid partition"), None);
    assert_eq!(array_ranges(&[0, 1, 2, 3]), "0-3");
    assert_eq!(array_ranges(&[1, 3, 4, 7]), "1,3-4,7");
    assert!(log_axis(&[0.01, 0.1, 1.0]));
    assert!(log_axis(&[1.0, 2.0, 4.0, 8.0]));
    assert!(!log_axis(&[1.0, 2.0, 3.0]));
    assert!(!log_axis(&[0.0, 1.0, 100.0]));
    let mut o = BTreeMap::new();
    o.insert("controller.alpha".to_string(), "0.1".to_string());
    assert_eq!(run_id(3, 10, &o), run_id(3, 10, &o.clone()));
    assert!(run_id(3, 10, &o).starts_with("0003-"));
    assert!(run_id(3, 20000, &o).starts_with("00003-"));
}

#[test]
fn heatmap_and_parameter_lines_check_their_input() {
    use lcsim::plot::{
        heatmap, parameter_lines, FigureFormat, Heatmap, Series, YScale, SWEEP_FIGURE_SIZE,
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut h = Heatmap {
        title: "t".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        x_ticks: vec!["0.1".into(), "1".into()],
        y_ticks: vec!["a".into()],
        values: vec![vec![0.5, f64::NAN]],
        notes: vec![vec![String::new(), "failed".into()]],
        value_label: "v".into(),
        range: Some((0.0, 1.0)),
        log: false,
    };
    let png = tmp.path().join("h.png");
    heatmap(&h, &png, FigureFormat::Png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let dim = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), SWEEP_FIGURE_SIZE);
    let svg = tmp.path().join("h.svg");
    heatmap(&h, &svg, FigureFormat::Svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("0.500") && text.contains("failed"),
        "cell values and notes printed"
    );
    h.log = true;
    assert!(
        heatmap(&h, &tmp.path().join("bad.png"), FigureFormat::Png).is_err(),
        "log scale from 0"
    );
    h.range = None;
    heatmap(&h, &png, FigureFormat::Png).unwrap();
    h.values = vec![vec![0.5]];
    assert!(heatmap(&h, &tmp.path().join("bad.png"), FigureFormat::Png).is_err());
    assert!(!tmp.path().join("bad.png").exists());
    let lines = [(vec![0.0, 1.0], Series::new("s", vec![0.2, 0.3]))];
    let r = parameter_lines(
        &lines,
        "x",
        "y",
        true,
        YScale::Unit,
        true,
        "",
        &tmp.path().join("l.png"),
        FigureFormat::Png,
    );
    assert!(r.is_err(), "x = 0 on a log axis");
    let r = parameter_lines(
        &lines,
        "x",
        "y",
        false,
        YScale::Log,
        true,
        "",
        &tmp.path().join("l.png"),
        FigureFormat::Png,
    );
    assert!(r.is_ok());
    let bad = [(vec![1.0, 2.0], Series::new("s", vec![0.0, 0.3]))];
    let r = parameter_lines(
        &bad,
        "x",
        "y",
        false,
        YScale::Log,
        true,
        "",
        &tmp.path().join("l.png"),
        FigureFormat::Png,
    );
    assert!(r.is_err(), "y = 0 on a log axis");
}

/// Plans two runs of `epochs` epochs in `tmp/s`, starts `sweep run s --jobs 2` as the leader
/// of its own process group and waits until `ready` holds for the runs' metrics.csv files
/// (which of them are written). Returns the plan, the sweep folder and the running sweep.
fn start_sweep_in_own_group(
    tmp: &Path,
    epochs: usize,
    ready: fn(&[bool]) -> bool,
) -> (Manifest, std::path::PathBuf, std::process::Child) {
    let epochs = format!("training.epochs={epochs}");
    let m = plan(
        tmp,
        "s",
        &[
            "--set",
            &epochs,
            "--set",
            "data.train_limit=0",
            "--grid",
            "controller.alpha=0.1,0.2",
        ],
    );
    let sweep = tmp.join("s");
    use std::os::unix::process::CommandExt;
    let child = Command::new(env!("CARGO_BIN_EXE_lcsim"))
        .args(["sweep", "run", "s", "--jobs", "2"])
        .current_dir(tmp)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let written = || -> Vec<bool> {
        m.runs
            .iter()
            .map(|r| sweep.join("runs").join(&r.id).join("metrics.csv").is_file())
            .collect()
    };
    let mut waited = 0;
    while !ready(&written()) && waited < 6000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    (m, sweep, child)
}

#[test]
fn ctrl_c_stops_the_runs_resumably() {
    let tmp = tempfile::tempdir().unwrap();
    // After the first completed epoch, SIGINT to the group (what Ctrl-C in a terminal does).
    let (m, sweep, child) = start_sweep_in_own_group(tmp.path(), 6, |w| w.iter().any(|&x| x));
    let pgid = format!("-{}", child.id());
    assert!(Command::new("kill")
        .args(["-INT", "--", &pgid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("resumable"), "{stdout}");
    for r in &m.runs {
        let dir = sweep.join("runs").join(&r.id);
        assert!(
            !dir.join("error.txt").exists(),
            "an interruption is no failure"
        );
        assert!(!dir.join("summary.json").exists(), "stopped before the end");
    }
    let o = lcsim_in(tmp.path(), &["sweep", "run", "s", "--jobs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    for r in &m.runs {
        assert!(summary(&sweep, &r.id).is_file());
        let log =
            std::fs::read_to_string(sweep.join("logs").join(format!("{}.log", r.id))).unwrap();
        let last = log.rsplit("=== lcsim sweep: attempt").next().unwrap();
        assert!(last.contains("--resume"), "{log}");
    }
}

#[test]
fn interrupting_only_the_sweep_stops_its_runs_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (m, sweep, child) = start_sweep_in_own_group(tmp.path(), 20, |w| w.iter().all(|&x| x));
    let metrics = |r: &lcsim::sweep::RunEntry| sweep.join("runs").join(&r.id).join("metrics.csv");
    // SIGINT to the sweep process alone: it stops (kills) its runs after a short grace.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    for r in &m.runs {
        let dir = sweep.join("runs").join(&r.id);
        assert!(
            !dir.join("error.txt").exists(),
            "an interruption is no failure"
        );
        assert!(!dir.join("summary.json").exists(), "stopped before the end");
    }
    // No run keeps going on its own: nothing changes in the run folders any more.
    let snapshot = |r: &lcsim::sweep::RunEntry| std::fs::read_to_string(metrics(r)).unwrap();
    let before: Vec<String> = m.runs.iter().map(snapshot).collect();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(before, m.runs.iter().map(snapshot).collect::<Vec<_>>());
    // Both runs are resumable (resuming is tested above).
    for r in &m.runs {
        assert!(sweep
            .join("runs")
            .join(&r.id)
            .join("checkpoint.npz")
            .is_file());
    }
}
