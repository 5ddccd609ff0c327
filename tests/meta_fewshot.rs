//! Few-shot classification for meta-learning (spec 7.1, issue 14 item 5): the learner's
//! cross-entropy gradient and Hessian-vector product against finite differences, the
//! digit-x-rotation class pools (disjoint, rotations exact), the N-way K-shot tasks (seeded,
//! one-hot, distinct images of the task's classes), the config's errors, and a short
//! meta-training run on the embedded digits that reports accuracies.

mod common;

use common::{lcsim_in, stderr};
use lcsim::config::Config;
use lcsim::data::DataSource;
use lcsim::numerics::rng::Rng;
use lcsim::system::learner::{LearnerLoss, Mlp};
use lcsim::system::meta::split_points;
use lcsim::tasks::{average_pool, class_pools, fewshot_split, fewshot_tasks, rotate_quarter};
use nalgebra::{DMatrix, DVector};

fn random(rows: usize, cols: usize, scale: f64, rng: &mut Rng) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| rng.uniform_range(-scale, scale))
}

fn classifier() -> Mlp {
    Mlp::new(vec![6, 5, 4])
        .unwrap()
        .with_loss(LearnerLoss::CrossEntropy)
}

/// Points of 6 inputs with one-hot labels of 4 classes.
fn labelled(p: usize, rng: &mut Rng) -> (DMatrix<f64>, DMatrix<f64>) {
    let x = random(6, p, 1.5, rng);
    let mut y = DMatrix::zeros(4, p);
    for j in 0..p {
        y[(j % 4, j)] = 1.0;
    }
    (x, y)
}

#[test]
fn cross_entropy_matches_its_closed_form_and_finite_differences() {
    let mlp = classifier();
    let mut rng = Rng::seed_from_u64(11);
    let n = mlp.num_params();
    let phi = random(n, 1, 0.9, &mut rng);
    let (x, y) = labelled(7, &mut rng);
    // The loss against -1/P sum log softmax(g)_label computed here.
    let out = mlp.predict(phi.as_slice(), &x).unwrap();
    let direct: f64 = (0..7)
        .map(|j| {
            let c = out.column(j);
            let z: f64 = c.iter().map(|v| v.exp()).sum();
            -(c[j % 4].exp() / z).ln()
        })
        .sum::<f64>()
        / 7.0;
    let loss = mlp.loss(phi.as_slice(), &x, &y).unwrap();
    assert!((loss - direct).abs() < 1e-12, "{loss} vs {direct}");
    let g = mlp.gradient(phi.as_slice(), &x, &y).unwrap();
    let h = 1e-6;
    for k in 0..n {
        let at = |d: f64| {
            let mut p = phi.clone();
            p[k] += d;
            mlp.loss(p.as_slice(), &x, &y).unwrap()
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (g[k] - fd).abs() < 1e-7 * (1.0 + fd.abs()),
            "{k}: {} vs {fd}",
            g[k]
        );
    }
    let (v, u) = (random(n, 1, 1.0, &mut rng), random(n, 1, 1.0, &mut rng));
    let hv = mlp.hvp(phi.as_slice(), &x, &y, v.as_slice()).unwrap();
    let grad_at = |d: f64| mlp.gradient((&phi + &v * d).as_slice(), &x, &y).unwrap();
    let fd: DVector<f64> = (grad_at(1e-5) - grad_at(-1e-5)) / 2e-5;
    assert!(
        (&hv - &fd).amax() < 1e-7 * (1.0 + fd.amax()),
        "{}",
        (&hv - &fd).amax()
    );
    let hu = mlp.hvp(phi.as_slice(), &x, &y, u.as_slice()).unwrap();
    let (a, b) = (u.column(0).dot(&hv), v.column(0).dot(&hu));
    assert!((a - b).abs() < 1e-12 * (1.0 + a.abs()), "{a} vs {b}");
    // Accuracy: the share of argmax hits, counted here.
    let hits = (0..7)
        .filter(|&j| out.column(j).argmax().0 == j % 4)
        .count();
    let acc = mlp.accuracy(phi.as_slice(), &x, &y).unwrap();
    assert_eq!(acc, hits as f64 / 7.0);
}

#[test]
fn rotations_and_pooling_are_exact() {
    // 4 x 4 image with distinct entries: four quarter turns give it back, one turn moves
    // the top-right corner to the top-left (counter-clockwise).
    let image: Vec<f64> = (0..16).map(f64::from).collect();
    let once = rotate_quarter(&image, 4);
    assert_eq!(once[0], image[3]);
    assert_eq!(once[12], image[0]);
    let mut back = image.clone();
    for _ in 0..4 {
        back = rotate_quarter(&back, 4);
    }
    assert_eq!(back, image);
    assert_eq!(average_pool(&image, 4, 2), vec![2.5, 4.5, 10.5, 12.5]);
    assert_eq!(average_pool(&image, 4, 1), image);
}

fn digits_config(extra: &[&str]) -> Config {
    let mut sets: Vec<String> = [
        "model.kind=\"meta\"",
        "model.hidden=[8]",
        "data.source=\"fewshot-digits\"",
        "method.name=\"lcp-di\"",
        "solver.method=\"newton-krylov\"",
        "solver.chunk=1",
        "training.learning_rate=0.01",
        "training.schedule=\"constant\"",
        "training.epochs=2",
        "training.batch_size=10",
        "training.diagnostics_samples=0",
        "meta.lambda=2.0",
        "meta.ways=3",
        "meta.support=2",
        "meta.query=3",
        "meta.image_pool=2",
        "meta.train_tasks=30",
        "meta.test_tasks=20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    Config::load(None, &sets).unwrap()
}

#[test]
fn class_pools_are_disjoint_digit_rotations_and_tasks_are_seeded() {
    let config = digits_config(&[]);
    let meta = config.meta_settings();
    let digits = lcsim::data::digits(0.5, 0).unwrap();
    let (train_pool, test_pool) =
        class_pools(&meta, &digits.train.inputs, &digits.train.labels, 8).unwrap();
    assert_eq!(
        (train_pool.classes.len(), test_pool.classes.len()),
        (24, 16)
    );
    assert!(train_pool.classes.iter().all(|c| c.digit <= 5));
    assert!(test_pool.classes.iter().all(|c| c.digit >= 6));
    // A class's images are its digit's images, rotated and pooled.
    let first = digits.train.labels.iter().position(|&l| l == 7).unwrap();
    let mut image: Vec<f64> = digits.train.inputs.column(first).iter().copied().collect();
    image = rotate_quarter(&rotate_quarter(&image, 8), 8);
    let class = test_pool
        .classes
        .iter()
        .position(|c| c.digit == 7 && c.quarter_turns == 2)
        .unwrap();
    let expected = average_pool(&image, 8, 2);
    assert_eq!(test_pool.images[class].column(0).as_slice(), &expected[..]);

    let (tasks, drawn) = fewshot_tasks(&meta, &test_pool, 12, 5).unwrap();
    let (again, _) = fewshot_tasks(&meta, &test_pool, 12, 5).unwrap();
    assert_eq!(tasks, again);
    let (other, _) = fewshot_tasks(&meta, &test_pool, 12, 5 + 1).unwrap();
    assert_ne!(tasks.inputs, other.inputs);
    let learner = config.learner().unwrap();
    assert_eq!(learner.sizes(), &[16, 8, 3]);
    let targets = tasks.targets.as_ref().unwrap();
    for (j, classes) in drawn.iter().enumerate() {
        assert_eq!(classes.len(), 3);
        let (xs, ys) = split_points(&learner, tasks.inputs.column(j).as_slice());
        let (xq, yq) = split_points(&learner, targets.column(j).as_slice());
        assert_eq!((xs.ncols(), xq.ncols()), (6, 9));
        let mut seen: Vec<Vec<u64>> = Vec::new();
        for (x, y) in [(&xs, &ys), (&xq, &yq)] {
            for p in 0..x.ncols() {
                let label = y.column(p).argmax().0;
                assert_eq!(y.column(p).sum(), 1.0);
                // The image is one of its class's images, and no image appears twice.
                let c = test_pool
                    .classes
                    .iter()
                    .position(|c| *c == classes[label])
                    .unwrap();
                let m = &test_pool.images[c];
                assert!((0..m.ncols()).any(|k| m.column(k) == x.column(p)));
                let key: Vec<u64> = x.column(p).iter().map(|v| v.to_bits()).collect();
                assert!(
                    !seen.contains(&key) || m.ncols() < 2,
                    "task {j}: a repeated image"
                );
                seen.push(key);
            }
        }
    }
    let split = fewshot_split(&config).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (30, 20));
}

#[test]
fn fewshot_settings_are_checked_with_the_key_named() {
    for (set, key) in [
        ("meta.ways=17", "meta.ways"),
        ("meta.ways=1", "meta.ways"),
        ("meta.image_pool=3", "meta.image_pool"),
        ("meta.test_digits=[3, 3]", "meta.test_digits"),
        ("meta.test_digits=[10]", "meta.test_digits"),
        ("meta.rotations=5", "meta.rotations"),
    ] {
        let sets = [
            "model.kind=\"meta\"".to_string(),
            "data.source=\"fewshot-digits\"".to_string(),
            set.to_string(),
        ];
        let err = match Config::load(None, &sets) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        assert!(err.contains(key), "{set}: {err}");
    }
    // More shots than a class has images.
    let config = digits_config(&["meta.support=200", "meta.query=1"]);
    let err = fewshot_split(&config).unwrap_err().to_string();
    assert!(err.contains("meta.support"), "{err}");
    assert_eq!(DataSource::FewshotDigits.image_side(), Some(8));
}

#[test]
fn a_fewshot_run_reports_meta_test_accuracies() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = digits_config(&["meta.ways=2", "meta.support=3"]);
    config.output.dir = dir.path().join("runs");
    config.output.name = "fs".into();
    let path = dir.path().join("fs.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    let out = lcsim_in(
        dir.path(),
        &["train", "--config", path.to_str().unwrap(), "--quiet"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("runs/fs/summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let test = &summary["meta_test"];
    assert_eq!(test["loss"], "query-cross-entropy", "{summary}");
    for key in [
        "accuracy",
        "initial_theta_accuracy",
        "accuracy_before_adaptation",
    ] {
        let v = test[key].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&v), "{key}: {summary}");
    }
    // 2-way tasks: fine-tuning on the support set beats chance on the query set.
    assert!(test["accuracy"].as_f64().unwrap() > 0.6, "{summary}");
    assert!(test["accuracy_ci95"].as_f64().unwrap() > 0.0);
}
