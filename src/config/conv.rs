//! `[conv]` and `[deq]`: the convolutional systems, `model.kind = "conv"` (a layered conv net,
//! [`crate::system::conv_net`]) and `model.kind = "deq"` (a convolutional deep equilibrium
//! model, [`crate::system::conv_deq`]), on the image sources (digits, mnist, cifar10). Their
//! nonlinearity is `model.activation`; `model.hidden` is not read.

use super::{Method, ModelKind};
use crate::error::{invalid, Result};
use crate::numerics::pool::PoolKind;
use crate::system::conv_deq::{ConvDeq, DeqSpec};
use crate::system::conv_net::{ConvNet, LayerSpec};
use serde::{Deserialize, Serialize};

/// `[conv]`: the hidden layers of the layered conv net, in order; the readout (dense, one unit
/// per class) follows the last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConvConfig {
    pub layers: Vec<LayerSpec>,
}

impl Default for ConvConfig {
    /// On MNIST (1 x 28 x 28): conv 8 x 5x5 (padding 2) with 2x2 average pooling (8 x 14 x 14),
    /// conv 16 x 5x5 stride 2 (padding 2; 16 x 7 x 7), dense 128, readout.
    fn default() -> Self {
        ConvConfig {
            layers: vec![
                LayerSpec::conv(8, 5, 2).with_pool(PoolKind::Avg, 2),
                LayerSpec::conv(16, 5, 2).with_stride(2),
                LayerSpec::dense(128),
            ],
        }
    }
}

/// `[deq]` is [`DeqSpec`]: channels, inner_channels, kernel, groups, input_pool, init_std.
pub type DeqConfig = DeqSpec;

impl super::Config {
    /// The image `(channels, height, width)` of `data.source`, for `model.kind = "conv"` or
    /// `"deq"`; an error naming data.source for a source without images.
    pub fn conv_image(&self) -> Result<(usize, usize, usize)> {
        match self.data.source.image_shape() {
            Some(s) if !self.data.source.is_tasks() => Ok((s.channels, s.height, s.width)),
            _ => Err(invalid(
                "data.source",
                format!(
                    "\"{}\" with model.kind = \"{}\"",
                    self.data.source.name(),
                    self.run_kind()
                ),
                "an image source (\"digits\", \"mnist\", \"cifar10\") for model.kind = \"conv\" or \"deq\"",
            )),
        }
    }

    /// `(parameters, state dimension)` of the conv system of `[conv]` or `[deq]` (10
    /// classes), checked without allocating it.
    pub fn conv_system_sizes(&self) -> Result<(usize, usize)> {
        let image = self.conv_image()?;
        match self.model.kind {
            ModelKind::Deq => ConvDeq::sizes(&self.deq_settings(), image, CLASSES),
            _ => ConvNet::sizes(&self.conv_settings().layers, image, CLASSES),
        }
    }

    /// The layered conv net of `[conv]` on `data.source`'s images, from `model.seed`.
    pub fn conv_net(&self, n_y: usize) -> Result<ConvNet> {
        let layers = &self.conv_settings().layers;
        ConvNet::new(
            layers,
            self.conv_image()?,
            n_y,
            self.model.activation,
            self.model.seed,
        )
    }

    /// The conv DEQ of `[deq]` on `data.source`'s images, from `model.seed`.
    pub fn conv_deq(&self, n_y: usize) -> Result<ConvDeq> {
        let spec = &self.deq_settings();
        ConvDeq::new(
            spec,
            self.conv_image()?,
            n_y,
            self.model.activation,
            self.model.seed,
        )
    }

    /// `model.kind = "conv"` and `"deq"` go with an image source, their own section and the
    /// methods they offer (lcp-di, lcp-kp, lcp-ebd; bp for the layered net, rbp for the DEQ).
    pub(super) fn validate_conv(&self) -> Result<()> {
        let kind = self.model.kind;
        if self.conv.is_some() && kind != ModelKind::Conv {
            return Err(invalid(
                "[conv]",
                format!("given with model.kind = \"{}\"", self.run_kind()),
                "[conv] only with model.kind = \"conv\"",
            ));
        }
        if self.deq.is_some() && kind != ModelKind::Deq {
            return Err(invalid(
                "[deq]",
                format!("given with model.kind = \"{}\"", self.run_kind()),
                "[deq] only with model.kind = \"deq\"",
            ));
        }
        if !matches!(kind, ModelKind::Conv | ModelKind::Deq) {
            return Ok(());
        }
        let name = self.method.name;
        let gradient = match kind {
            ModelKind::Conv => Method::Bp,
            _ => Method::Rbp,
        };
        if !matches!(name, Method::LcpDi | Method::LcpKp | Method::LcpEbd) && name != gradient {
            return Err(invalid(
                "method.name",
                name.name(),
                &format!(
                    "\"lcp-di\", \"lcp-kp\", \"lcp-ebd\" or \"{}\" for model.kind = \"{}\" (lcp-lf is not offered by the conv systems yet)",
                    gradient.name(),
                    self.run_kind()
                ),
            ));
        }
        self.conv_system_sizes().map(|_| ())
    }

    /// The model kind as written in configs.
    pub fn run_kind(&self) -> &'static str {
        match self.model.kind {
            ModelKind::Rnn => "rnn",
            ModelKind::Ff => "ff",
            ModelKind::Meta => "meta",
            ModelKind::Conv => "conv",
            ModelKind::Deq => "deq",
        }
    }
}

/// Classes of every image source.
const CLASSES: usize = 10;
