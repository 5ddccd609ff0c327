//! Few-shot tasks for meta-learning (spec 7.1), as data sets whose samples are tasks: a
//! task's column holds its support set (the inner problem's data, packed as
//! [`crate::system::meta::pack_points`] does) and its target column the query set (the
//! outer loss's data).
//!
//! Sinusoid regression (MAML's task): `y = A sin(x + p)` with A, p and the points x drawn
//! uniformly from `[meta]`'s ranges.

use crate::config::MetaConfig;
use crate::data::{Dataset, Split};
use crate::error::Result;
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
