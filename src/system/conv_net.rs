//! A layered convolutional network written as an equilibrium system (the authors' "conv-ff"
//! structure, spec 1.2 with convolutions): hidden layers v_1..v_L and readout y,
//!
//! ```text
//! tau dv_1/dt = -v_1 + K_1 * x + b_1
//! tau dv_k/dt = -v_k + K_k * r_{k-1} + b_k         r_k = pool_k(s(v_k))  (pool optional)
//! tau dy/dt   = -y + D r_L + d
//! ```
//!
//! with `K_k *` a 2-D convolution (any stride, zero padding) or a dense product, and the
//! biases per channel. The free equilibrium is one forward sweep. Its Jacobian products:
//!
//! ```text
//! (J dphi)_k   = -dphi_k + K_k * pool'_{k-1}(s'(v_{k-1}) dv_{k-1})
//! (J^T w)_{k-1} = -w_{k-1} + s'(v_{k-1}) pool'^T_{k-1}(K_k^T w_k)
//! ```
//!
//! (max pooling is piecewise linear: its Jacobian selects each window's maximum). The least-
//! control update of layer k is `psi_k r_{k-1}^T` in the convolution's weight layout
//! (`psi_1 x^T` for the first). Every sample is its own column: no statistics across a batch.
//!
//! LCP-KP (spec 3.2): learned feedback weights B_k stand in for K_k^T in `J^T` (layers 2..L
//! and the readout's G for D^T): a kernel of K_k's shape used in the transposed convolution,
//! or for a dense map a matrix shaped as its transpose (as the rate net's B, G).

use super::{ControlEntry, EquilibriumSystem, FeatureMapLayout, KolenPollack};
use crate::error::{invalid, Result};
use crate::numerics::activation::Activation;
use crate::numerics::conv::{broadcast_channel_bias, channel_bias_grad, Conv2d, ConvError};
use crate::numerics::linalg::{gemm, mul, mul_tr, Op};
use crate::numerics::pool::{Pool2d, PoolKind, PoolLinearization};
use crate::numerics::rng::Rng;
use crate::system::params::Params;
use crate::system::rate::angle_degrees;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

/// Whether a layer convolves or is dense.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    Conv,
    Dense,
}

/// One hidden layer as configured (`[conv] layers = [{ kind = "conv", ... }, ...]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    pub kind: LayerKind,
    /// Output channels of a convolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// Units of a dense layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<usize>,
    /// Square kernel size of a convolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<usize>,
    /// Stride of a convolution (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// Zero padding of a convolution (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<usize>,
    /// Pooling of the layer's rates before the next layer reads them (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolKind>,
    /// Pooling window (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<usize>,
    /// Pooling stride (default: the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_stride: Option<usize>,
}

impl LayerSpec {
    /// A convolution layer `channels` k x k, stride 1, padding `pad`, no pooling.
    pub fn conv(channels: usize, kernel: usize, pad: usize) -> Self {
        LayerSpec {
            kind: LayerKind::Conv,
            channels: Some(channels),
            units: None,
            kernel: Some(kernel),
            stride: None,
            pad: Some(pad),
            pool: None,
            pool_size: None,
            pool_stride: None,
        }
    }

    /// A dense layer of `units`.
    pub fn dense(units: usize) -> Self {
        LayerSpec {
            kind: LayerKind::Dense,
            channels: None,
            units: Some(units),
            kernel: None,
            stride: None,
            pad: None,
            pool: None,
            pool_size: None,
            pool_stride: None,
        }
    }

    /// The same layer with its stride.
    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride = Some(stride);
        self
    }

    /// The same layer with its rates pooled (window `size`, stride `size`).
    pub fn with_pool(mut self, kind: PoolKind, size: usize) -> Self {
        self.pool = Some(kind);
        self.pool_size = Some(size);
        self
    }
}

/// The linear map of one layer: a convolution or a dense product.
#[derive(Clone, Debug, PartialEq)]
enum LayerOp {
    Conv(Conv2d),
    Dense { inputs: usize, units: usize },
}

impl LayerOp {
    fn out_len(&self) -> usize {
        match self {
            LayerOp::Conv(c) => c.out_len(),
            LayerOp::Dense { units, .. } => *units,
        }
    }
    /// Rows of the output that share one bias (a channel's pixels; 1 for dense).
    fn spatial(&self) -> usize {
        match self {
            LayerOp::Conv(c) => c.out_h() * c.out_w(),
            LayerOp::Dense { .. } => 1,
        }
    }
    /// Shape of the weight tensor, and its fan-in.
    fn weight_shape(&self) -> (usize, usize) {
        match self {
            LayerOp::Conv(c) => (c.out_c, c.patch_len()),
            LayerOp::Dense { inputs, units } => (*units, *inputs),
        }
    }
    fn bias_len(&self) -> usize {
        self.out_len() / self.spatial()
    }
    /// `K * r`.
    fn apply(&self, k: &DMatrix<f64>, r: &DMatrix<f64>) -> DMatrix<f64> {
        match self {
            LayerOp::Conv(c) => c.forward(k, r),
            LayerOp::Dense { .. } => mul(k.as_view(), r.as_view()),
        }
    }
    /// `K^T * g` (the transposed convolution).
    fn transpose(&self, k: &DMatrix<f64>, g: &DMatrix<f64>) -> DMatrix<f64> {
        match self {
            LayerOp::Conv(c) => c.transpose(k, g),
            LayerOp::Dense { inputs, .. } => {
                let mut out = DMatrix::zeros(*inputs, g.ncols());
                gemm(
                    &mut out,
                    1.0,
                    k.as_view(),
                    Op::Transposed,
                    g.as_view(),
                    false,
                );
                out
            }
        }
    }
    /// `K^T * g`, or with learned feedback weights `b` (layout of [`LayerOp::as_feedback`])
    /// in place of `K^T`: the transposed convolution with kernel b, or `b g` for a dense map.
    fn back(
        &self,
        k: &DMatrix<f64>,
        learned: Option<&DMatrix<f64>>,
        g: &DMatrix<f64>,
    ) -> DMatrix<f64> {
        match (self, learned) {
            (_, None) => self.transpose(k, g),
            (LayerOp::Conv(c), Some(b)) => c.transpose(b, g),
            (LayerOp::Dense { .. }, Some(b)) => mul(b.as_view(), g.as_view()),
        }
    }
    /// A weight (or its update) in the layout of the feedback weights that stand in for its
    /// transpose: a kernel as it is, a dense matrix transposed.
    fn as_feedback(&self, k: &DMatrix<f64>) -> DMatrix<f64> {
        match self {
            LayerOp::Conv(_) => k.clone(),
            LayerOp::Dense { .. } => k.transpose(),
        }
    }
    /// The gradient of `<g, K * r>` in K, summed over the batch.
    fn weight_grad(&self, r: &DMatrix<f64>, g: &DMatrix<f64>) -> DMatrix<f64> {
        match self {
            LayerOp::Conv(c) => c.weight_grad(r, g),
            LayerOp::Dense { .. } => mul_tr(g.as_view(), r.as_view()),
        }
    }
}

/// One layer: its map, the pooling of its rates, its rows in phi.
#[derive(Clone, Debug, PartialEq)]
struct Layer {
    op: LayerOp,
    pool: Option<Pool2d>,
    rows: Range<usize>,
}

/// The layered convolutional network with its parameters.
#[derive(Clone, Debug)]
pub struct ConvNet {
    image: (usize, usize, usize),
    /// Hidden layers, then the readout (no rates, no pooling).
    layers: Vec<Layer>,
    activation: Activation,
    specs: Vec<LayerSpec>,
    params: Params,
}

/// The network linearised at phi.
pub struct ConvLinearization {
    /// s'(v_k) of every hidden layer.
    slopes: Vec<DMatrix<f64>>,
    pools: Vec<Option<PoolLinearization>>,
    /// With psi: `s''(v_k) pool'^T_k(K_{k+1}^T psi_{k+1})` per hidden layer.
    curvature_back: Option<Vec<DMatrix<f64>>>,
    /// LCP-KP's feedback weights, which replace the `K_k^T` of the transposed products.
    feedback: Option<Arc<Params>>,
}

/// The rates every layer reads (r_k after pooling), with the slopes and pooling selections.
struct Rates {
    rates: Vec<DMatrix<f64>>,
    slopes: Vec<DMatrix<f64>>,
    pre_pool: Vec<DMatrix<f64>>,
    pools: Vec<Option<PoolLinearization>>,
}

/// Builds the layers from the specs on an image `(channels, height, width)`.
fn build_layers(
    specs: &[LayerSpec],
    image: (usize, usize, usize),
    n_y: usize,
) -> Result<Vec<Layer>> {
    if specs.is_empty() {
        return Err(invalid("conv.layers", "[]", "at least one hidden layer"));
    }
    if n_y == 0 {
        return Err(invalid("classes", 0, "at least 1 output"));
    }
    let key = |i: usize, k: &str| format!("conv.layers[{i}].{k}");
    let conv_error = |i: usize, e: ConvError| match e {
        ConvError::Shape {
            field,
            value,
            allowed,
        } => invalid(&key(i, field), value, allowed),
    };
    // The shape (channels, h, w) of what the next layer reads; None once flattened.
    let mut shape = Some(image);
    let mut in_len = image.0 * image.1 * image.2;
    let mut start = 0;
    let mut layers = Vec::with_capacity(specs.len() + 1);
    for (i, s) in specs.iter().enumerate() {
        let forbid = |name: &str, present: bool, kind: &str| {
            if present {
                Err(invalid(
                    &key(i, name),
                    "set",
                    &format!("absent for a {kind} layer"),
                ))
            } else {
                Ok(())
            }
        };
        let (op, pool) = match s.kind {
            LayerKind::Conv => {
                forbid("units", s.units.is_some(), "conv")?;
                let Some((c, h, w)) = shape else {
                    return Err(invalid(
                        &key(i, "kind"),
                        "conv",
                        "conv layers before the first dense layer",
                    ));
                };
                let out_c = s
                    .channels
                    .ok_or_else(|| invalid(&key(i, "channels"), "missing", "a channel count"))?;
                let k = s
                    .kernel
                    .ok_or_else(|| invalid(&key(i, "kernel"), "missing", "a kernel size"))?;
                let conv = Conv2d::new(c, out_c, h, w, k, s.pad.unwrap_or(0))
                    .and_then(|conv| conv.with_stride(s.stride.unwrap_or(1)))
                    .map_err(|e| conv_error(i, e))?;
                let pool = match s.pool {
                    None => {
                        forbid("pool_size", s.pool_size.is_some(), "layer without pool")?;
                        forbid("pool_stride", s.pool_stride.is_some(), "layer without pool")?;
                        None
                    }
                    Some(kind) => {
                        let size = s.pool_size.unwrap_or(2);
                        let stride = s.pool_stride.unwrap_or(size);
                        let p = Pool2d::new(kind, out_c, conv.out_h(), conv.out_w(), size, stride)
                            .map_err(|e| conv_error(i, e))?;
                        Some(p)
                    }
                };
                shape = Some(match &pool {
                    Some(p) => (out_c, p.out_h(), p.out_w()),
                    None => (out_c, conv.out_h(), conv.out_w()),
                });
                (LayerOp::Conv(conv), pool)
            }
            LayerKind::Dense => {
                for (name, present) in [
                    ("channels", s.channels.is_some()),
                    ("kernel", s.kernel.is_some()),
                    ("stride", s.stride.is_some()),
                    ("pad", s.pad.is_some()),
                    ("pool", s.pool.is_some()),
                    ("pool_size", s.pool_size.is_some()),
                    ("pool_stride", s.pool_stride.is_some()),
                ] {
                    forbid(name, present, "dense")?;
                }
                let units = s
                    .units
                    .filter(|&u| u > 0)
                    .ok_or_else(|| invalid(&key(i, "units"), "missing or 0", "units >= 1"))?;
                shape = None;
                (
                    LayerOp::Dense {
                        inputs: in_len,
                        units,
                    },
                    None,
                )
            }
        };
        let len = op.out_len();
        in_len = pool.as_ref().map_or(len, |p| p.out_len());
        layers.push(Layer {
            op,
            pool,
            rows: start..start + len,
        });
        start += len;
    }
    layers.push(Layer {
        op: LayerOp::Dense {
            inputs: in_len,
            units: n_y,
        },
        pool: None,
        rows: start..start + n_y,
    });
    Ok(layers)
}

/// Names of layer k's weight and bias (`W1, b1, ...`; the readout's `D, d`).
fn param_names(k: usize, readout: bool) -> (String, String) {
    match readout {
        true => ("D".into(), "d".into()),
        false => (format!("W{}", k + 1), format!("b{}", k + 1)),
    }
}

impl ConvNet {
    /// `(parameters, state dimension)` of the network [`ConvNet::new`] builds, without
    /// allocating it (the specs are checked as there).
    pub fn sizes(
        specs: &[LayerSpec],
        image: (usize, usize, usize),
        n_y: usize,
    ) -> Result<(usize, usize)> {
        let layers = build_layers(specs, image, n_y)?;
        let params = layers
            .iter()
            .map(|l| {
                let (r, c) = l.op.weight_shape();
                r * c + l.op.bias_len()
            })
            .sum();
        Ok((params, layers.last().map_or(0, |l| l.rows.end)))
    }

    /// A network on images `(channels, height, width)` with the hidden layers `specs` and
    /// `n_y` outputs, initialised as PyTorch's Conv2d/Linear: every weight and bias uniform in
    /// `(-1/sqrt(fan_in), 1/sqrt(fan_in))`, drawn layer by layer from `seed`.
    pub fn new(
        specs: &[LayerSpec],
        image: (usize, usize, usize),
        n_y: usize,
        activation: Activation,
        seed: u64,
    ) -> Result<Self> {
        let layers = build_layers(specs, image, n_y)?;
        let mut rng = Rng::seed_from_u64(seed);
        let mut entries = Vec::new();
        for (k, l) in layers.iter().enumerate() {
            let (rows, fan_in) = l.op.weight_shape();
            let bound = 1.0 / (fan_in as f64).sqrt();
            let (wn, bn) = param_names(k, k + 1 == layers.len());
            let w = DMatrix::from_fn(rows, fan_in, |_, _| rng.uniform_range(-bound, bound));
            let b = DMatrix::from_fn(l.op.bias_len(), 1, |_, _| rng.uniform_range(-bound, bound));
            entries.push((wn, w));
            entries.push((bn, b));
        }
        Ok(ConvNet {
            image,
            layers,
            activation,
            specs: specs.to_vec(),
            params: Params::new(entries),
        })
    }

    /// The network of [`ConvNet::new`]'s shape with the given parameters (checked by name
    /// and shape, all finite).
    pub fn from_params(
        specs: &[LayerSpec],
        image: (usize, usize, usize),
        n_y: usize,
        activation: Activation,
        params: Params,
    ) -> Result<Self> {
        let mut net = ConvNet::new(specs, image, n_y, activation, 0)?;
        params.ensure_layout(&net.params)?;
        net.params = params;
        Ok(net)
    }

    /// The hidden layers as configured.
    pub fn specs(&self) -> &[LayerSpec] {
        &self.specs
    }
    /// The input image `(channels, height, width)`.
    pub fn image(&self) -> (usize, usize, usize) {
        self.image
    }
    /// The rate nonlinearity.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// Outputs n_y.
    pub fn n_y(&self) -> usize {
        self.loss_rows().len()
    }
    /// Row ranges of phi per hidden layer (the readout's are [`EquilibriumSystem::loss_rows`]).
    pub fn layer_rows(&self) -> Vec<Range<usize>> {
        let hidden = &self.layers[..self.layers.len() - 1];
        hidden.iter().map(|l| l.rows.clone()).collect()
    }
    /// Feature-map shape `(channels, height, width)` of hidden layer k's state (None for a
    /// dense layer).
    pub fn feature_map(&self, k: usize) -> Option<(usize, usize, usize)> {
        match &self.layers.get(k)?.op {
            LayerOp::Conv(c) => Some((c.out_c, c.out_h(), c.out_w())),
            LayerOp::Dense { .. } => None,
        }
    }

    fn weight(&self, k: usize) -> &DMatrix<f64> {
        self.params.tensor(2 * k)
    }
    fn bias(&self, k: usize) -> &DMatrix<f64> {
        self.params.tensor(2 * k + 1)
    }
    fn hidden(&self) -> &[Layer] {
        &self.layers[..self.layers.len() - 1]
    }

    /// Layer k's bias broadcast over its pixels and the batch.
    fn broadcast_bias(&self, k: usize, batch: usize) -> DMatrix<f64> {
        broadcast_channel_bias(self.bias(k), self.layers[k].op.spatial(), batch)
    }

    /// The rates r_k = pool_k(s(v_k)) of every hidden layer, with slopes and selections.
    fn rates(&self, phi: &DMatrix<f64>) -> Rates {
        let a = self.activation;
        let n = self.hidden().len();
        let mut out = Rates {
            rates: Vec::with_capacity(n),
            slopes: Vec::with_capacity(n),
            pre_pool: Vec::with_capacity(n),
            pools: Vec::with_capacity(n),
        };
        for l in self.hidden() {
            let v = phi.rows_range(l.rows.clone());
            let s = v.map(|v| a.rate(v));
            out.slopes.push(v.zip_map(&s, |v, s| a.slope_at_rate(v, s)));
            match &l.pool {
                Some(p) => {
                    let (r, lin) = p.forward(&s);
                    out.rates.push(r);
                    out.pools.push(Some(lin));
                }
                None => {
                    out.rates.push(s.clone());
                    out.pools.push(None);
                }
            }
            out.pre_pool.push(s);
        }
        out
    }

    /// `K_{k+1} * r_k` for every layer after the first, stacked in phi's rows (zero on the
    /// first layer's rows).
    fn forward_from(&self, rates: &[DMatrix<f64>]) -> DMatrix<f64> {
        let batch = rates[0].ncols();
        let mut out = DMatrix::zeros(self.state_dim(), batch);
        for (k, l) in self.layers.iter().enumerate().skip(1) {
            out.rows_range_mut(l.rows.clone())
                .copy_from(&l.op.apply(self.weight(k), &rates[k - 1]));
        }
        out
    }

    /// `pool'^T_{k-1}(K_k^T w_k)` for every hidden layer k-1: what its rates receive from w
    /// (with `learned` feedback weights, `B_k` in place of `K_k^T`).
    fn feedback(
        &self,
        lin_pools: &[Option<PoolLinearization>],
        w: &DMatrix<f64>,
        learned: Option<&Params>,
    ) -> Vec<DMatrix<f64>> {
        self.hidden()
            .iter()
            .enumerate()
            .map(|(j, l)| {
                let next = &self.layers[j + 1];
                let g = next.op.back(
                    self.weight(j + 1),
                    learned.map(|fb| fb.tensor(j)),
                    &w.rows_range(next.rows.clone()).into_owned(),
                );
                match (&l.pool, &lin_pools[j]) {
                    (Some(p), Some(lin)) => p.vjp(lin, &g),
                    _ => g,
                }
            })
            .collect()
    }

    /// The forward sweep: the free equilibrium, phi = (v_1, ..., v_L, y).
    pub fn forward_pass(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let a = self.activation;
        let mut phi = self.input_drive(x);
        for (k, l) in self.layers.iter().enumerate().skip(1) {
            let prev = &self.layers[k - 1];
            let s = phi.rows_range(prev.rows.clone()).map(|v| a.rate(v));
            let r = match &prev.pool {
                Some(p) => p.forward(&s).0,
                None => s,
            };
            let add = l.op.apply(self.weight(k), &r);
            let mut rows = phi.rows_range_mut(l.rows.clone());
            rows += add;
        }
        phi
    }
}

impl EquilibriumSystem for ConvNet {
    type Linearization = ConvLinearization;

    fn state_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.rows.end)
    }
    fn input_dim(&self) -> usize {
        self.image.0 * self.image.1 * self.image.2
    }
    /// The readout y, the last n_y rows.
    fn loss_rows(&self) -> Range<usize> {
        self.layers[self.layers.len() - 1].rows.clone()
    }
    fn control_entry(&self) -> ControlEntry {
        ControlEntry::Readout
    }
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// `(K_1 * x + b_1, b_2, ..., b_L, d)`, each bias broadcast over its channel's pixels.
    fn input_drive(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let mut drive = DMatrix::zeros(self.state_dim(), x.ncols());
        for (k, l) in self.layers.iter().enumerate() {
            let mut rows = self.broadcast_bias(k, x.ncols());
            if k == 0 {
                rows += l.op.apply(self.weight(0), x);
            }
            drive.rows_range_mut(l.rows.clone()).copy_from(&rows);
        }
        drive
    }

    /// `f = -phi + drive + (0, K_2 * r_1, ..., D r_L)`.
    fn vector_field_driven(&self, phi: &DMatrix<f64>, drive: &DMatrix<f64>) -> DMatrix<f64> {
        let r = self.rates(phi);
        let mut f = self.forward_from(&r.rates);
        f += drive;
        f -= phi;
        f
    }

    fn linearize(
        &self,
        phi: &DMatrix<f64>,
        _x: &DMatrix<f64>,
        psi: Option<&DMatrix<f64>>,
    ) -> ConvLinearization {
        self.linearization(self.rates(phi), psi, None)
    }

    /// `(J dphi)_k = -dphi_k + K_k * pool'_{k-1}(s'(v_{k-1}) dv_{k-1})`.
    fn jvp_at(&self, lin: &ConvLinearization, dphi: &DMatrix<f64>) -> DMatrix<f64> {
        let dr: Vec<DMatrix<f64>> = self
            .hidden()
            .iter()
            .enumerate()
            .map(|(j, l)| {
                let ds = lin.slopes[j].component_mul(&dphi.rows_range(l.rows.clone()));
                match (&l.pool, &lin.pools[j]) {
                    (Some(p), Some(pl)) => p.jvp(pl, &ds),
                    _ => ds,
                }
            })
            .collect();
        let mut out = self.forward_from(&dr);
        out -= dphi;
        out
    }

    /// `(J^T w)_{k-1} = -w_{k-1} + s'(v_{k-1}) pool'^T(K_k^T w_k)`, `(J^T w)_y = -w_y`.
    /// With feedback weights B_k in place of K_k^T when linearised with them.
    fn vjp_at(&self, lin: &ConvLinearization, w: &DMatrix<f64>) -> DMatrix<f64> {
        let back = self.feedback(&lin.pools, w, lin.feedback.as_deref());
        let mut out = -w;
        for ((l, g), sl) in self.hidden().iter().zip(&back).zip(&lin.slopes) {
            out.rows_range_mut(l.rows.clone())
                .zip_zip_apply(sl, g, |o, sl, g| *o += sl * g);
        }
        out
    }

    /// `(s''(v_k) pool'^T(K_{k+1}^T psi_{k+1}) dv_k, 0)` (pooling selections are locally
    /// constant).
    fn second_order_at(
        &self,
        lin: &ConvLinearization,
        dphi: &DMatrix<f64>,
    ) -> Option<DMatrix<f64>> {
        let mut out = DMatrix::zeros(dphi.nrows(), dphi.ncols());
        if let Some(cb) = &lin.curvature_back {
            for (l, c) in self.hidden().iter().zip(cb) {
                out.rows_range_mut(l.rows.clone())
                    .copy_from(&c.component_mul(&dphi.rows_range(l.rows.clone())));
            }
        }
        Some(out)
    }

    /// One pass for both: the rates, slopes and pooling selections are computed once.
    fn field_and_vjp(
        &self,
        phi: &DMatrix<f64>,
        _x: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        self.field_and_back(phi, drive, w, None)
    }

    /// `W_1: psi_1 x^T`, `W_k: psi_k r_{k-1}^T`, `D: psi_y r_L^T` (in each layer's weight
    /// layout), biases: psi summed over each channel's pixels; all summed over samples.
    fn param_vjp(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>, psi: &DMatrix<f64>) -> Params {
        let r = self.rates(phi);
        let mut entries = Vec::with_capacity(2 * self.layers.len());
        for (k, l) in self.layers.iter().enumerate() {
            let g = psi.rows_range(l.rows.clone()).into_owned();
            let input = if k == 0 { x } else { &r.rates[k - 1] };
            let bias = channel_bias_grad(&g, l.op.spatial());
            let (wn, bn) = param_names(k, k + 1 == self.layers.len());
            entries.push((wn, l.op.weight_grad(input, &g)));
            entries.push((bn, bias));
        }
        Params::new(entries)
    }

    /// The forward sweep is the free equilibrium (exact).
    fn exact_free_equilibrium(&self, x: &DMatrix<f64>) -> Option<DMatrix<f64>> {
        Some(self.forward_pass(x))
    }

    fn kolen_pollack(&self) -> Option<&dyn KolenPollack<ConvLinearization>> {
        Some(self)
    }

    /// The conv layers' convolutions, named by their kernels `W1, W2, ...`.
    fn convolutions(&self) -> Vec<(String, Conv2d)> {
        let conv = |(k, l): (usize, &Layer)| match l.op {
            LayerOp::Conv(c) => Some((param_names(k, false).0, c)),
            LayerOp::Dense { .. } => None,
        };
        self.layers.iter().enumerate().filter_map(conv).collect()
    }

    /// The conv layers' states `v1, v2, ...`.
    fn feature_maps(&self) -> Vec<FeatureMapLayout> {
        let rows = self.layer_rows();
        (0..rows.len())
            .filter_map(|k| {
                let (channels, height, width) = self.feature_map(k)?;
                Some(FeatureMapLayout {
                    name: format!("v{}", k + 1),
                    rows: rows[k].clone(),
                    channels,
                    height,
                    width,
                })
            })
            .collect()
    }
}

impl ConvNet {
    /// The linearisation from the rates at phi: slopes, pooling selections, and with psi the
    /// curvature term `s''(v_k) pool'^T_k(K_{k+1}^T psi_{k+1})` (B_{k+1} in place of
    /// `K_{k+1}^T` with feedback weights, which the transposed products then use too).
    fn linearization(
        &self,
        r: Rates,
        psi: Option<&DMatrix<f64>>,
        feedback: Option<&Arc<Params>>,
    ) -> ConvLinearization {
        let a = self.activation;
        let curvature_back = psi.map(|psi| {
            let back = self.feedback(&r.pools, psi, feedback.map(|f| &**f));
            back.iter()
                .zip(&r.pre_pool)
                .map(|(g, s)| s.zip_map(g, |s, g| a.curvature_at_rate(s) * g))
                .collect()
        });
        ConvLinearization {
            slopes: r.slopes,
            pools: r.pools,
            curvature_back,
            feedback: feedback.cloned(),
        }
    }

    /// `(f, J^T w)` (or the feedback path's product) with the rates computed once.
    fn field_and_back(
        &self,
        phi: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
        feedback: Option<&Arc<Params>>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        let r = self.rates(phi);
        let mut f = self.forward_from(&r.rates);
        f += drive;
        f -= phi;
        let lin = self.linearization(r, None, feedback);
        (f, self.vjp_at(&lin, w))
    }

    /// The layers whose transposes the feedback weights stand in for (every layer after the
    /// first, the readout last), with the feedback tensors' names (`B2, ..., B_L, G`).
    fn fed_back_layers(&self) -> impl Iterator<Item = (usize, &Layer, String)> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().skip(1).map(move |(k, l)| {
            let name = if k == last {
                "G".into()
            } else {
                format!("B{}", k + 1)
            };
            (k, l, name)
        })
    }
}

impl KolenPollack<ConvLinearization> for ConvNet {
    /// As the rate net's (spec 3.2, reference initialisation): each B_k uniform, then scaled
    /// to unit Frobenius norm; G (r_L's length x n_y) normal with variance `1 / (n_y len(r_L))`;
    /// drawn layer by layer from `seed`.
    fn init_feedback(&self, seed: u64) -> Params {
        let mut rng = Rng::seed_from_u64(seed);
        let last = self.layers.len() - 1;
        let entries = self
            .fed_back_layers()
            .map(|(k, l, name)| {
                let (r, c) = l.op.as_feedback(self.weight(k)).shape();
                let b = if k == last {
                    let sd = 1.0 / ((r * c) as f64).sqrt();
                    DMatrix::from_fn(r, c, |_, _| sd * rng.normal())
                } else {
                    let bound = 1.0 / (c as f64).sqrt();
                    let b = DMatrix::from_fn(r, c, |_, _| rng.uniform_range(-bound, bound));
                    let norm = b.norm();
                    if norm > 0.0 {
                        b / norm
                    } else {
                        b
                    }
                };
                (name, b)
            })
            .collect();
        Params::new(entries)
    }

    /// `B_k: Delta K_k` (a kernel) or `(Delta W_k)^T` (dense), `G: (Delta D)^T`.
    fn transposed_update(&self, update: &Params) -> Params {
        Params::new(
            self.fed_back_layers()
                .map(|(k, l, name)| (name, l.op.as_feedback(update.tensor(2 * k))))
                .collect(),
        )
    }

    fn linearize_with_feedback(
        &self,
        phi: &DMatrix<f64>,
        _x: &DMatrix<f64>,
        psi: Option<&DMatrix<f64>>,
        feedback: &Arc<Params>,
    ) -> ConvLinearization {
        self.linearization(self.rates(phi), psi, Some(feedback))
    }

    fn field_and_feedback(
        &self,
        phi: &DMatrix<f64>,
        _x: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
        feedback: &Arc<Params>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        self.field_and_back(phi, drive, w, Some(feedback))
    }

    /// The angle between each B_k and K_k (a kernel) or W_k^T (dense), and between G and D^T.
    fn feedback_angles(&self, feedback: &Params) -> Vec<f64> {
        self.fed_back_layers()
            .enumerate()
            .map(|(i, (k, l, _))| {
                angle_degrees(feedback.tensor(i), &l.op.as_feedback(self.weight(k)))
            })
            .collect()
    }

    /// The weights and biases of layers 2..L and the readout (those the feedback weights
    /// stand in for, with their biases; as the rate net's W, b, D, d): layer 1 does not decay.
    fn decaying_params(&self) -> Vec<usize> {
        (2..2 * self.layers.len()).collect()
    }
}
