//! Few-shot tasks for meta-learning (spec 7.1), as data sets whose samples are tasks: a
//! task's column holds its support set (the inner problem's data, packed as
//! [`crate::system::meta::pack_points`] does) and its target column the query set (the
//! outer loss's data).
//!
//! Sinusoid regression (MAML's task): `y = A sin(x + p)` with A, p and the points x drawn
//! uniformly from `[meta]`'s ranges.
//!
//! Few-shot classification (Omniglot's protocol on digits): a class is a digit under one
//! of `meta.rotations` rotations by 90 degrees (4: 40 classes, as Omniglot's characters are
//! augmented); the classes of `meta.test_digits` form the meta-test pool, the others the
//! meta-training pool, so no meta-test digit is seen in any rotation during meta-training.
//! A task draws N = `meta.ways` classes of its pool, labels them 0..N-1 in the drawn order,
//! and draws K = `meta.support` support and `meta.query` query images of each, all
//! distinct. Images are average-pooled over `meta.image_pool` blocks; y is one-hot.

use crate::config::{Config, MetaConfig};
use crate::data::{permutation, DataSource, Dataset, Split};
use crate::error::{invalid, LcsimError, Result};
use crate::numerics::rng::Rng;
use crate::system::meta::pack_points;
use nalgebra::DMatrix;

/// Offset of the meta-test tasks' seed from `data.seed` (new tasks, never trained on).
pub const TEST_TASK_SEED: u64 = 0x6d65_7461_5f74_6573;

/// One sinusoid `y = amplitude sin(x + phase)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sinusoid {
    pub amplitude: f64,
    pub phase: f64,
}

impl Sinusoid {
    /// The curve at x.
    pub fn at(&self, x: f64) -> f64 {
        self.amplitude * (x + self.phase).sin()
    }
}

/// `n` sinusoid tasks drawn from `seed`: the data set (support sets as inputs, query sets as
/// targets) and each task's curve.
pub fn sinusoid_tasks(meta: &MetaConfig, n: usize, seed: u64) -> Result<(Dataset, Vec<Sinusoid>)> {
    let mut rng = Rng::seed_from_u64(seed);
    let (k, q) = (meta.support, meta.query);
    let mut support = DMatrix::zeros(2 * k, n);
    let mut query = DMatrix::zeros(2 * q, n);
    let mut curves = Vec::with_capacity(n);
    let [x0, x1] = meta.x_range;
    for j in 0..n {
        let curve = Sinusoid {
            amplitude: rng.uniform_range(meta.amplitude[0], meta.amplitude[1]),
            phase: rng.uniform_range(meta.phase[0], meta.phase[1]),
        };
        let points = |p: usize, rng: &mut Rng| {
            let x = DMatrix::from_fn(1, p, |_, _| rng.uniform_range(x0, x1));
            pack_points(&x, &x.map(|v| curve.at(v)))
        };
        support.set_column(j, &points(k, &mut rng));
        query.set_column(j, &points(q, &mut rng));
        curves.push(curve);
    }
    Ok((Dataset::with_targets(support, query, "sinusoid")?, curves))
}

/// The meta-training pool (`meta.train_tasks`, from `seed`) and the meta-test tasks
/// (`meta.test_tasks`, from `seed ^ TEST_TASK_SEED`).
pub fn sinusoid_split(meta: &MetaConfig, seed: u64) -> Result<Split> {
    let (train, _) = sinusoid_tasks(meta, meta.train_tasks, seed)?;
    let (test, _) = sinusoid_tasks(meta, meta.test_tasks, seed ^ TEST_TASK_SEED)?;
    Ok(Split { train, test })
}

/// A class of few-shot classification: a digit rotated by `quarter_turns x 90` degrees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageClass {
    pub digit: usize,
    pub quarter_turns: usize,
}

/// The images of each class of one pool (pooled pixels x images).
#[derive(Clone, Debug)]
pub struct ClassPool {
    pub classes: Vec<ImageClass>,
    pub images: Vec<DMatrix<f64>>,
}

/// The image (row-major, `side x side`) rotated by 90 degrees counter-clockwise.
pub fn rotate_quarter(image: &[f64], side: usize) -> Vec<f64> {
    let mut out = vec![0.0; side * side];
    for r in 0..side {
        for c in 0..side {
            // Counter-clockwise: the result's (r, c) is the original's (c, side - 1 - r).
            out[r * side + c] = image[c * side + (side - 1 - r)];
        }
    }
    out
}

/// The image (row-major, `side x side`) averaged over `pool x pool` blocks (row-major,
/// `side/pool x side/pool`).
pub fn average_pool(image: &[f64], side: usize, pool: usize) -> Vec<f64> {
    let s = side / pool;
    let mut out = vec![0.0; s * s];
    for r in 0..side {
        for c in 0..side {
            out[(r / pool) * s + c / pool] += image[r * side + c];
        }
    }
    let area = (pool * pool) as f64;
    out.iter_mut().for_each(|v| *v /= area);
    out
}

/// The meta-training and meta-test class pools of `images` (one row-major `side x side`
/// image per column, pixels in [0, 1]) with their digit `labels`.
pub fn class_pools(
    meta: &MetaConfig,
    images: &DMatrix<f64>,
    labels: &[usize],
    side: usize,
) -> Result<(ClassPool, ClassPool)> {
    let pooled = (side / meta.image_pool).pow(2);
    let mut pools = (
        ClassPool {
            classes: Vec::new(),
            images: Vec::new(),
        },
        ClassPool {
            classes: Vec::new(),
            images: Vec::new(),
        },
    );
    for digit in 0..10 {
        let columns: Vec<usize> = (0..labels.len()).filter(|&j| labels[j] == digit).collect();
        for quarter_turns in 0..meta.rotations {
            let mut m = DMatrix::zeros(pooled, columns.len());
            for (k, &j) in columns.iter().enumerate() {
                let mut image = images.column(j).iter().copied().collect::<Vec<_>>();
                for _ in 0..quarter_turns {
                    image = rotate_quarter(&image, side);
                }
                let small = average_pool(&image, side, meta.image_pool);
                m.column_mut(k).copy_from_slice(&small);
            }
            let pool = if meta.test_digits.contains(&digit) {
                &mut pools.1
            } else {
                &mut pools.0
            };
            pool.classes.push(ImageClass {
                digit,
                quarter_turns,
            });
            pool.images.push(m);
        }
    }
    let need = meta.support + meta.query;
    for pool in [&pools.0, &pools.1] {
        if let Some((class, m)) = pool
            .classes
            .iter()
            .zip(&pool.images)
            .find(|(_, m)| m.ncols() < need)
        {
            return Err(invalid(
                "meta.support",
                format!("{} (+ meta.query {})", meta.support, meta.query),
                &format!(
                    "support + query <= the {} images of digit {} (the fewest of a class)",
                    m.ncols(),
                    class.digit
                ),
            ));
        }
    }
    Ok(pools)
}

/// `n` N-way K-shot tasks drawn from `pool` with `seed`: support sets as inputs, query sets
/// as targets, and each task's classes in label order.
pub fn fewshot_tasks(
    meta: &MetaConfig,
    pool: &ClassPool,
    n: usize,
    seed: u64,
) -> Result<(Dataset, Vec<Vec<ImageClass>>)> {
    let mut rng = Rng::seed_from_u64(seed);
    let (ways, k, q) = (meta.ways, meta.support, meta.query);
    let pixels = pool.images.first().map_or(0, |m| m.nrows());
    let point = pixels + ways;
    let mut support = DMatrix::zeros(ways * k * point, n);
    let mut query = DMatrix::zeros(ways * q * point, n);
    let mut drawn = Vec::with_capacity(n);
    for j in 0..n {
        let chosen = &permutation(pool.classes.len(), &mut rng)[..ways];
        let (mut xs, mut ys) = (
            DMatrix::zeros(pixels, ways * k),
            DMatrix::zeros(ways, ways * k),
        );
        let (mut xq, mut yq) = (
            DMatrix::zeros(pixels, ways * q),
            DMatrix::zeros(ways, ways * q),
        );
        for (label, &c) in chosen.iter().enumerate() {
            let images = &pool.images[c];
            let order = permutation(images.ncols(), &mut rng);
            for (i, &image) in order.iter().enumerate().take(k + q) {
                let (x, y, col) = match i < k {
                    true => (&mut xs, &mut ys, label * k + i),
                    false => (&mut xq, &mut yq, label * q + i - k),
                };
                x.set_column(col, &images.column(image));
                y[(label, col)] = 1.0;
            }
        }
        support.set_column(j, &pack_points(&xs, &ys));
        query.set_column(j, &pack_points(&xq, &yq));
        drawn.push(chosen.iter().map(|&c| pool.classes[c]).collect());
    }
    Ok((Dataset::with_targets(support, query, "fewshot")?, drawn))
}

/// The images of a few-shot source, all files pooled: (images, digit labels, side).
fn fewshot_images(config: &Config) -> Result<(DMatrix<f64>, Vec<usize>, usize)> {
    let source = config.data.source;
    let split = match source {
        DataSource::FewshotMnist => crate::data::mnist(&config.data.mnist_dir, None, None)?,
        DataSource::FewshotDigits => crate::data::digits(0.5, 0)?,
        _ => {
            return Err(invalid(
                "data.source",
                source.name(),
                "\"fewshot-mnist\" or \"fewshot-digits\"",
            ))
        }
    };
    let side = source.image_side().unwrap_or(0);
    if split.train.n_inputs() != side * side {
        return Err(LcsimError::Shape {
            field: format!("{} images", source.name()),
            expected: format!("{side} x {side} pixels"),
            found: format!("{} pixels", split.train.n_inputs()),
        });
    }
    let mut images = split.train.inputs.clone();
    let n = images.ncols();
    images = images.resize_horizontally(n + split.test.len(), 0.0);
    images
        .columns_mut(n, split.test.len())
        .copy_from(&split.test.inputs);
    let labels = [split.train.labels, split.test.labels].concat();
    Ok((images, labels, side))
}

/// The meta-training tasks (`meta.train_tasks` from the meta-training pool, seed
/// `data.seed`) and meta-test tasks (`meta.test_tasks` from the meta-test pool, seed
/// `data.seed ^ TEST_TASK_SEED`) of a few-shot classification source.
pub fn fewshot_split(config: &Config) -> Result<Split> {
    let meta = config.meta_settings();
    let (images, labels, side) = fewshot_images(config)?;
    let (train_pool, test_pool) = class_pools(&meta, &images, &labels, side)?;
    let seed = config.data.seed;
    let (train, _) = fewshot_tasks(&meta, &train_pool, meta.train_tasks, seed)?;
    let (test, _) = fewshot_tasks(&meta, &test_pool, meta.test_tasks, seed ^ TEST_TASK_SEED)?;
    Ok(Split { train, test })
}
