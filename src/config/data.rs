//! `[data]`: the data set and its split.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[data]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub source: crate::data::DataSource,
    /// Directory of the MNIST IDX files (source = "mnist").
    pub mnist_dir: PathBuf,
    /// Directory of the CIFAR-10 binary batches (source = "cifar10").
    pub cifar_dir: PathBuf,
    /// Test share of the digits and synthetic data.
    pub test_fraction: f64,
    /// Use at most this many training samples; 0 = all.
    pub train_limit: usize,
    /// Use at most this many test samples; 0 = all.
    pub test_limit: usize,
    /// Samples of a synthetic task.
    pub synthetic_samples: usize,
    /// Seed of the train/test split and of synthetic data.
    pub seed: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: crate::data::DataSource::Digits,
            mnist_dir: PathBuf::from("../shared/data/mnist10k"),
            cifar_dir: PathBuf::from("../shared/data/cifar-10-batches-bin"),
            test_fraction: 0.2,
            train_limit: 0,
            test_limit: 0,
            synthetic_samples: 400,
            seed: 0,
        }
    }
}
