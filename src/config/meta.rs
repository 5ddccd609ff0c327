//! `[meta]`: meta-learning (spec 7.1) with `model.kind = "meta"`: the inner problem's pull
//! lambda, the task family (`data.source = "sinusoid"`, or N-way K-shot classification with
//! `"fewshot-mnist"` / `"fewshot-digits"`) and implicit MAML's conjugate gradient. The
//! learner MLP is `1 - model.hidden - 1` for sinusoids, `pixels - model.hidden - ways` for
//! classification.

use crate::error::{ensure_positive, invalid, Result};
use serde::{Deserialize, Serialize};

/// `[meta]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaConfig {
    /// Pull lambda of the inner problem towards theta (> 0).
    pub lambda: f64,
    /// Support points K of a task (the inner loss); per class for classification (K-shot).
    pub support: usize,
    /// Query points of a task (the outer loss); per class for classification.
    pub query: usize,
    /// Classification: classes N of a task (N-way).
    pub ways: usize,
    /// Classification: rotations by multiples of 90 degrees that make each digit new classes
    /// (1 = the digits only, 4 = 0, 90, 180 and 270 degrees).
    pub rotations: usize,
    /// Classification: the digits whose classes (all rotations) are kept for the meta-test;
    /// meta-training uses the other digits.
    pub test_digits: Vec<usize>,
    /// Classification: images are average-pooled over `image_pool x image_pool` blocks.
    pub image_pool: usize,
    /// Sinusoid amplitudes, drawn uniformly from [low, high].
    pub amplitude: [f64; 2],
    /// Sinusoid phases, drawn uniformly from [low, high].
    pub phase: [f64; 2],
    /// Input points x, drawn uniformly from [low, high].
    pub x_range: [f64; 2],
    /// Tasks of the meta-training pool (one epoch visits each once).
    pub train_tasks: usize,
    /// New tasks of the meta-test.
    pub test_tasks: usize,
    /// imaml: relative residual at which conjugate gradient stops.
    pub cg_tolerance: f64,
    /// imaml: conjugate-gradient iterations at most.
    pub cg_max_iterations: usize,
}

impl Default for MetaConfig {
    fn default() -> Self {
        MetaConfig {
            lambda: 1.0,
            support: 10,
            query: 10,
            ways: 5,
            rotations: 4,
            test_digits: vec![6, 7, 8, 9],
            image_pool: 2,
            amplitude: [0.1, 5.0],
            phase: [0.0, std::f64::consts::PI],
            x_range: [-5.0, 5.0],
            train_tasks: 10_000,
            test_tasks: 1_000,
            cg_tolerance: 1e-6,
            cg_max_iterations: 100,
        }
    }
}

impl MetaConfig {
    /// Checks every value; errors name the key.
    pub fn validate(&self) -> Result<()> {
        ensure_positive("meta.lambda", self.lambda)?;
        ensure_positive("meta.cg_tolerance", self.cg_tolerance)?;
        for (key, n) in [
            ("meta.support", self.support),
            ("meta.query", self.query),
            ("meta.train_tasks", self.train_tasks),
            ("meta.test_tasks", self.test_tasks),
            ("meta.cg_max_iterations", self.cg_max_iterations),
            ("meta.image_pool", self.image_pool),
        ] {
            if n == 0 {
                return Err(invalid(key, 0, "an integer >= 1"));
            }
        }
        if self.support > 100_000 || self.query > 100_000 {
            return Err(invalid(
                "meta.support",
                format!("support {}, query {}", self.support, self.query),
                "at most 100000 points per task each",
            ));
        }
        if self.ways < 2 {
            return Err(invalid("meta.ways", self.ways, "N >= 2 classes per task"));
        }
        if !(1..=4).contains(&self.rotations) {
            return Err(invalid(
                "meta.rotations",
                self.rotations,
                "1, 2, 3 or 4 (rotations by 0, 90, 180, 270 degrees)",
            ));
        }
        let mut digits = self.test_digits.clone();
        digits.sort_unstable();
        digits.dedup();
        if digits.len() != self.test_digits.len()
            || digits.iter().any(|&d| d > 9)
            || digits.is_empty()
            || digits.len() == 10
        {
            return Err(invalid(
                "meta.test_digits",
                format!("{:?}", self.test_digits),
                "distinct digits 0-9, at least one and at most nine (the rest are for meta-training)",
            ));
        }
        for (pool, digits) in [
            ("meta-training", 10 - self.test_digits.len()),
            ("meta-test", self.test_digits.len()),
        ] {
            let classes = digits * self.rotations;
            if self.ways > classes {
                return Err(invalid(
                    "meta.ways",
                    self.ways,
                    &format!(
                        "at most the {classes} classes of the {pool} pool ({digits} digits x meta.rotations = {}); lower meta.ways or change meta.test_digits / meta.rotations",
                        self.rotations
                    ),
                ));
            }
        }
        for (key, [low, high]) in [
            ("meta.amplitude", self.amplitude),
            ("meta.phase", self.phase),
            ("meta.x_range", self.x_range),
        ] {
            if !(low.is_finite() && high.is_finite() && low <= high) {
                return Err(invalid(
                    key,
                    format!("[{low}, {high}]"),
                    "[low, high] with finite low <= high",
                ));
            }
        }
        Ok(())
    }
}
