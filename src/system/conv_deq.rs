//! A convolutional deep equilibrium model (the authors' "conv-rnn" structure) as an
//! equilibrium system: feature maps z (C channels on the image grid) and a readout y,
//!
//! ```text
//! tau dz/dt = -z + T(z, x),   T = GN3(s(rho z + GN2(x_enc + K2 * GN1(s(K1 * z)))))
//!                               (GN1, GN3 optional: `inner_norm`, `output_norm`, default off)
//! tau dy/dt = -y + D avg(z) + d
//! x_enc = K_enc * pool(x) + b_enc
//! ```
//!
//! with 3x3-style convolutions K1 (C -> inner channels), K2 (inner -> C) without bias, an
//! input encoder K_enc, group normalisations with per-channel affine parameters (per sample:
//! the authors' BatchNorm in the encoder and readout couples the samples of a batch, so it is
//! replaced here; every sample keeps its own equilibrium), an optional fixed average pooling
//! of the image, and an average pooling `avg` of z over blocks before the readout (the last
//! GroupNorm fixes each group's mean, so a global average per channel would leave the readout
//! one number per group to read). The free
//! equilibrium is a genuine fixed point, found by the steady-state solvers. The authors' s is
//! relu; with it f is only piecewise smooth, and the LCP-DI controller's feedback
//! `s'(.) * ...` jumps where a unit crosses zero, so a controlled equilibrium can sit on a
//! kink where the flow chatters and no solver converges (reported as such). A smooth s
//! (tanh) gives the smooth system the theory (the envelope theorem) assumes.
//!
//! LCP-KP (spec 3.2): learned kernels B1, B2 (shaped as K1, K2) replace K1, K2 in the
//! transposed convolutions of `J^T`, and G (features x n_y) replaces D^T; the group norms'
//! Jacobians stay exact (they hold no weights a feedback path would need to transport).

use super::{ControlEntry, EquilibriumSystem, FeatureMapLayout, KolenPollack};
use crate::error::{invalid, Result};
use crate::numerics::activation::Activation;
use crate::numerics::conv::{broadcast_channel_bias, channel_bias_grad, Conv2d, ConvError};
use crate::numerics::linalg::{mul, mul_tr, tr_mul};
use crate::numerics::norm::{GroupNorm, NormLinearization};
use crate::numerics::pool::{Pool2d, PoolKind, PoolLinearization};
use crate::numerics::rng::Rng;
use crate::system::params::Params;
use crate::system::rate::angle_degrees;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

/// The DEQ's sizes as configured (`[deq]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeqSpec {
    /// Channels C of the equilibrium feature maps z.
    pub channels: usize,
    /// Channels of the inner convolution K1 (C -> inner -> C).
    pub inner_channels: usize,
    /// Square kernel of K1, K2 and the encoder (odd; padding keeps the grid).
    pub kernel: usize,
    /// Groups of every group normalisation (divides C and the inner channels).
    pub groups: usize,
    /// Average pooling of the image before the encoder (1 = none).
    pub input_pool: usize,
    /// The readout reads z averaged over `readout_pool x readout_pool` blocks (1 = every
    /// pixel; the grid's side = one mean per channel).
    pub readout_pool: usize,
    /// Standard deviation of K1 and K2's normal initialisation (authors: 0.01).
    pub init_std: f64,
    /// Gain rho of the skip connection inside T, `s(rho z + GN2(..))` (authors: 1). At 1 the
    /// last GroupNorm amplifies the skip path (gain ~ s'/std > 1): the free flow wanders
    /// among many near-neutral equilibria; below ~0.6 it settles to one stable equilibrium.
    pub skip_gain: f64,
    /// GroupNorm GN1 after `s(K1 z)` (authors: true). While `K1 z` is in s's linear range (as
    /// at the authors' init) it makes T nearly indifferent to K1's scale, so the loop through
    /// K1, K2 has a gain of order one from the start; without it the loop's gain is of the
    /// order of |K1| |K2| (small at the authors' init).
    pub inner_norm: bool,
    /// GroupNorm GN3 on T's output (authors: true). It divides the skip path by the spread
    /// of `s(rho z + ..)`, a gain above one at rho = 1.
    pub output_norm: bool,
}

impl Default for DeqSpec {
    fn default() -> Self {
        DeqSpec {
            channels: 8,
            inner_channels: 16,
            kernel: 3,
            groups: 4,
            input_pool: 2,
            readout_pool: 1,
            init_std: 0.01,
            skip_gain: 0.5,
            inner_norm: false,
            output_norm: false,
        }
    }
}

/// Indices of the parameters.
const K_ENC: usize = 0;
const B_ENC: usize = 1;
const K1: usize = 2;
const K2: usize = 3;
/// gamma_i, beta_i of GN_i (i = 1, 2, 3) at `GAMMA + 2 (i - 1)`, `GAMMA + 2 (i - 1) + 1`.
const GAMMA: usize = 4;
const D: usize = 10;
const D_BIAS: usize = 11;
/// Names in storage order.
pub const DEQ_PARAM_NAMES: [&str; 12] = [
    "K_enc", "b_enc", "K1", "K2", "gamma1", "beta1", "gamma2", "beta2", "gamma3", "beta3", "D", "d",
];

/// The convolutional DEQ with its parameters.
#[derive(Clone, Debug)]
pub struct ConvDeq {
    spec: DeqSpec,
    image: (usize, usize, usize),
    input_pool: Option<Pool2d>,
    encoder: Conv2d,
    conv1: Conv2d,
    conv2: Conv2d,
    /// GN1 on the inner channels, GN2 and GN3 on C.
    norm_inner: GroupNorm,
    norm_state: GroupNorm,
    readout_pool: Pool2d,
    activation: Activation,
    n_y: usize,
    params: Params,
}

/// What the Jacobian products need at z (see the module doc's names).
pub struct DeqLinearization {
    /// s'(K1 z) and s'(rho z + n2).
    slope1: DMatrix<f64>,
    slope3: DMatrix<f64>,
    /// GN1 and GN3's linearisations (None where `deq.inner_norm` / `deq.output_norm` is off).
    gn1: Option<NormLinearization>,
    gn2: NormLinearization,
    gn3: Option<NormLinearization>,
    /// GN1's output (K2's input), for the weight gradient.
    n1: DMatrix<f64>,
    /// T(z).
    out: DMatrix<f64>,
    /// LCP-KP's feedback weights (B1, B2, G), which replace K1, K2 and D^T in the transposed
    /// products.
    feedback: Option<Arc<Params>>,
}

impl ConvDeq {
    /// A DEQ on images `(channels, height, width)` with `n_y` outputs and nonlinearity s: K1,
    /// K2 normal with `spec.init_std`, encoder and readout PyTorch-uniform, GN gamma 1 and
    /// beta 0, from `seed`.
    pub fn new(
        spec: &DeqSpec,
        image: (usize, usize, usize),
        n_y: usize,
        activation: Activation,
        seed: u64,
    ) -> Result<Self> {
        let net = ConvDeq::shaped(spec, image, n_y, activation)?;
        let mut rng = Rng::seed_from_u64(seed);
        let mut uniform = |r: usize, c: usize, fan_in: usize| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            DMatrix::from_fn(r, c, |_, _| rng.uniform_range(-bound, bound))
        };
        let enc_fan = net.encoder.patch_len();
        let k_enc = uniform(spec.channels, enc_fan, enc_fan);
        let b_enc = uniform(spec.channels, 1, enc_fan);
        let features = net.readout_pool.out_len();
        let d_mat = uniform(n_y, features, features);
        let d_bias = uniform(n_y, 1, features);
        let mut rng = Rng::seed_from_u64(seed.wrapping_add(1));
        let mut normal =
            |r: usize, c: usize| DMatrix::from_fn(r, c, |_, _| spec.init_std * rng.normal());
        let k1 = normal(spec.inner_channels, net.conv1.patch_len());
        let k2 = normal(spec.channels, net.conv2.patch_len());
        let ones = |c: usize| DMatrix::from_element(c, 1, 1.0);
        let zeros = |c: usize| DMatrix::zeros(c, 1);
        let (ci, c) = (spec.inner_channels, spec.channels);
        let tensors = vec![
            k_enc,
            b_enc,
            k1,
            k2,
            ones(ci),
            zeros(ci),
            ones(c),
            zeros(c),
            ones(c),
            zeros(c),
            d_mat,
            d_bias,
        ];
        let params = Params::new(
            DEQ_PARAM_NAMES
                .iter()
                .zip(tensors)
                .map(|(n, m)| (n.to_string(), m))
                .collect(),
        );
        Ok(ConvDeq { params, ..net })
    }

    /// `(parameters, state dimension)` of the DEQ [`ConvDeq::new`] builds, without allocating
    /// it (the spec is checked as there).
    pub fn sizes(
        spec: &DeqSpec,
        image: (usize, usize, usize),
        n_y: usize,
    ) -> Result<(usize, usize)> {
        let net = ConvDeq::shaped(spec, image, n_y, Activation::Tanh)?;
        let (c, ci) = (spec.channels, spec.inner_channels);
        let params = c * net.encoder.patch_len()
            + c
            + ci * net.conv1.patch_len()
            + c * net.conv2.patch_len()
            + 2 * (ci + 2 * c)
            + n_y * net.readout_pool.out_len()
            + n_y;
        Ok((params, net.state_dim()))
    }

    /// The DEQ of [`ConvDeq::new`]'s shape with the given parameters (checked by name and
    /// shape, all finite).
    pub fn from_params(
        spec: &DeqSpec,
        image: (usize, usize, usize),
        n_y: usize,
        activation: Activation,
        params: Params,
    ) -> Result<Self> {
        let net = ConvDeq::new(spec, image, n_y, activation, 0)?;
        params.ensure_layout(&net.params)?;
        Ok(ConvDeq { params, ..net })
    }

    /// The layers of `spec` on `image`, with empty parameters.
    fn shaped(
        spec: &DeqSpec,
        image: (usize, usize, usize),
        n_y: usize,
        activation: Activation,
    ) -> Result<Self> {
        let conv_error = |e: ConvError| match e {
            ConvError::Shape {
                field,
                value,
                allowed,
            } => invalid(&format!("deq.{field}"), value, allowed),
        };
        if spec.kernel.is_multiple_of(2) {
            return Err(invalid(
                "deq.kernel",
                spec.kernel,
                "an odd size (padding kernel / 2 keeps the grid)",
            ));
        }
        if !(spec.init_std >= 0.0 && spec.init_std.is_finite()) {
            return Err(invalid(
                "deq.init_std",
                spec.init_std,
                "a finite number >= 0",
            ));
        }
        if !(spec.skip_gain >= 0.0 && spec.skip_gain.is_finite()) {
            return Err(invalid(
                "deq.skip_gain",
                spec.skip_gain,
                "a finite number >= 0",
            ));
        }
        if n_y == 0 {
            return Err(invalid("classes", 0, "at least 1 output"));
        }
        let (c_in, h0, w0) = image;
        if spec.input_pool == 0 || spec.input_pool > h0.min(w0) {
            return Err(invalid(
                "deq.input_pool",
                spec.input_pool,
                &format!("1..={} (the image is {h0} x {w0})", h0.min(w0)),
            ));
        }
        let input_pool = match spec.input_pool {
            1 => None,
            p => Some(Pool2d::new(PoolKind::Avg, c_in, h0, w0, p, p).map_err(conv_error)?),
        };
        let (h, w) = input_pool.map_or((h0, w0), |p| (p.out_h(), p.out_w()));
        let (k, pad) = (spec.kernel, spec.kernel / 2);
        let (c, ci) = (spec.channels, spec.inner_channels);
        let encoder = Conv2d::new(c_in, c, h, w, k, pad).map_err(conv_error)?;
        let conv1 = Conv2d::new(c, ci, h, w, k, pad).map_err(conv_error)?;
        let conv2 = Conv2d::new(ci, c, h, w, k, pad).map_err(conv_error)?;
        let group = |channels: usize, key: &str| {
            GroupNorm::new(channels, spec.groups, h * w, 1e-5).map_err(|_| {
                invalid(
                    "deq.groups",
                    spec.groups,
                    &format!("a divisor of {key} ({channels})"),
                )
            })
        };
        if spec.output_norm && spec.groups >= spec.channels {
            return Err(invalid(
                "deq.groups",
                spec.groups,
                &format!(
                    "fewer than deq.channels ({c}): with one channel per group the last GroupNorm \
                     sets every channel mean, all the readout reads, to beta"
                ),
            ));
        }
        let norm_inner = group(ci, "deq.inner_channels")?;
        let norm_state = group(c, "deq.channels")?;
        let rp = spec.readout_pool;
        if rp == 0 || rp > h.min(w) {
            return Err(invalid(
                "deq.readout_pool",
                rp,
                &format!("1..={} (z's grid is {h} x {w})", h.min(w)),
            ));
        }
        let readout_pool = Pool2d::new(PoolKind::Avg, c, h, w, rp, rp).map_err(conv_error)?;
        Ok(ConvDeq {
            spec: spec.clone(),
            image,
            input_pool,
            encoder,
            conv1,
            conv2,
            norm_inner,
            norm_state,
            readout_pool,
            activation,
            n_y,
            params: Params::new(Vec::new()),
        })
    }

    /// The configured sizes.
    pub fn spec(&self) -> &DeqSpec {
        &self.spec
    }
    /// The nonlinearity s.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// The input image `(channels, height, width)`.
    pub fn image(&self) -> (usize, usize, usize) {
        self.image
    }
    /// Shape `(channels, height, width)` of the equilibrium feature maps z.
    pub fn feature_map(&self) -> (usize, usize, usize) {
        (self.spec.channels, self.conv1.h, self.conv1.w)
    }
    /// Rows of z in phi.
    pub fn feature_rows(&self) -> Range<usize> {
        0..self.conv1.in_len()
    }

    fn p(&self, i: usize) -> &DMatrix<f64> {
        self.params.tensor(i)
    }
    fn z_len(&self) -> usize {
        self.conv1.in_len()
    }

    /// The image after the fixed input pooling.
    fn pooled_input(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        match &self.input_pool {
            Some(p) => p.forward(x).0,
            None => x.clone(),
        }
    }

    /// `x_enc = K_enc * pool(x) + b_enc`.
    fn encode(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let p = self.encoder.out_h() * self.encoder.out_w();
        self.encoder.forward(self.p(K_ENC), &self.pooled_input(x))
            + broadcast_channel_bias(self.p(B_ENC), p, x.ncols())
    }

    /// `T(z, x_enc)` and everything its Jacobian needs.
    fn fixed_point_map(&self, z: &DMatrix<f64>, x_enc: &DMatrix<f64>) -> DeqLinearization {
        let act = self.activation;
        let rates = |a: &DMatrix<f64>| {
            let r = a.map(|v| act.rate(v));
            let slope = a.zip_map(&r, |v, r| act.slope_at_rate(v, r));
            (r, slope)
        };
        let a1 = self.conv1.forward(self.p(K1), z);
        let (r1, slope1) = rates(&a1);
        let (n1, gn1) = self.switched_norm(1, r1);
        let s = x_enc + self.conv2.forward(self.p(K2), &n1);
        let (n2, gn2) = self
            .norm_state
            .forward(&s, self.p(GAMMA + 2), self.p(GAMMA + 3));
        let (r3, slope3) = rates(&(z * self.spec.skip_gain + n2));
        let (out, gn3) = self.switched_norm(3, r3);
        DeqLinearization {
            slope1,
            slope3,
            gn1,
            gn2,
            gn3,
            n1,
            out,
            feedback: None,
        }
    }

    /// GN1 (`i = 1`, on the inner channels) or GN3 (`i = 3`) if switched on, else None.
    fn switched(&self, i: usize) -> Option<(&GroupNorm, usize)> {
        let gamma = GAMMA + 2 * (i - 1);
        match i {
            1 if self.spec.inner_norm => Some((&self.norm_inner, gamma)),
            3 if self.spec.output_norm => Some((&self.norm_state, gamma)),
            _ => None,
        }
    }

    /// `GN_i(x)` with its linearisation, or x itself where GN_i is off.
    fn switched_norm(
        &self,
        i: usize,
        x: DMatrix<f64>,
    ) -> (DMatrix<f64>, Option<NormLinearization>) {
        match self.switched(i) {
            Some((norm, gamma)) => {
                let (y, lin) = norm.forward(&x, self.p(gamma), self.p(gamma + 1));
                (y, Some(lin))
            }
            None => (x, None),
        }
    }

    /// `J_GNi x`, or `J_GNi^T x` when `transpose` (x itself where GN_i is off).
    fn switched_product(
        &self,
        i: usize,
        lin: Option<&NormLinearization>,
        x: &DMatrix<f64>,
        transpose: bool,
    ) -> DMatrix<f64> {
        match (self.switched(i), lin) {
            (Some((norm, gamma)), Some(lin)) if transpose => norm.vjp(lin, self.p(gamma), x),
            (Some((norm, gamma)), Some(lin)) => norm.jvp(lin, self.p(gamma), x),
            _ => x.clone(),
        }
    }

    /// GN_i's gamma and beta gradients (zero where GN_i is off: they are not used).
    fn switched_param_vjp(
        &self,
        i: usize,
        lin: Option<&NormLinearization>,
        g: &DMatrix<f64>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        match (self.switched(i), lin) {
            (Some((norm, _)), Some(lin)) => norm.param_vjp(lin, g),
            _ => {
                let c = self.p(GAMMA + 2 * (i - 1)).nrows();
                (DMatrix::zeros(c, 1), DMatrix::zeros(c, 1))
            }
        }
    }

    /// z averaged over the readout's blocks and the pooling's linearisation.
    fn channel_means(&self, z: &DMatrix<f64>) -> (DMatrix<f64>, PoolLinearization) {
        self.readout_pool.forward(z)
    }

    /// `(dT/dz)^T g` and the intermediate signals the parameter gradients need:
    /// `(g_z, g_t, g_s, g_n1, g_a1)` (gradients at T's output, t, s, n1 and a1). Linearised
    /// with feedback weights, the transposed convolutions use B2, B1 in place of K2, K1.
    fn map_vjp(&self, lin: &DeqLinearization, g: &DMatrix<f64>) -> MapGradients {
        let (k1, k2) = match &lin.feedback {
            Some(fb) => (fb.tensor(0), fb.tensor(1)),
            None => (self.p(K1), self.p(K2)),
        };
        let g_r3 = self.switched_product(3, lin.gn3.as_ref(), g, true);
        let g_t = g_r3.component_mul(&lin.slope3);
        let g_s = self.norm_state.vjp(&lin.gn2, self.p(GAMMA + 2), &g_t);
        let g_n1 = self.conv2.transpose(k2, &g_s);
        let g_r1 = self.switched_product(1, lin.gn1.as_ref(), &g_n1, true);
        let g_a1 = g_r1.component_mul(&lin.slope1);
        let g_z = &g_t * self.spec.skip_gain + self.conv1.transpose(k1, &g_a1);
        MapGradients {
            g_z,
            g_t,
            g_s,
            g_n1,
            g_a1,
        }
    }

    /// Splits phi into z and y.
    fn parts<'a>(
        &self,
        phi: &'a DMatrix<f64>,
    ) -> (
        nalgebra::DMatrixView<'a, f64>,
        nalgebra::DMatrixView<'a, f64>,
    ) {
        let n = self.z_len();
        (phi.rows(0, n), phi.rows(n, self.n_y))
    }
}

/// The gradients inside T that [`ConvDeq::map_vjp`] passes on.
struct MapGradients {
    g_z: DMatrix<f64>,
    g_t: DMatrix<f64>,
    g_s: DMatrix<f64>,
    g_n1: DMatrix<f64>,
    g_a1: DMatrix<f64>,
}

/// `(top; bottom)`.
fn stacked(top: DMatrix<f64>, bottom: DMatrix<f64>) -> DMatrix<f64> {
    crate::system::rate::stack(&top, &bottom)
}

impl EquilibriumSystem for ConvDeq {
    type Linearization = (DeqLinearization, PoolLinearization);

    fn state_dim(&self) -> usize {
        self.z_len() + self.n_y
    }
    fn input_dim(&self) -> usize {
        self.image.0 * self.image.1 * self.image.2
    }
    /// The readout y, the last n_y rows.
    fn loss_rows(&self) -> Range<usize> {
        self.z_len()..self.z_len() + self.n_y
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

    /// `(x_enc, d)`: the encoded image (T reads it) and the readout's bias.
    fn input_drive(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let d = self.p(D_BIAS);
        let bias = DMatrix::from_fn(self.n_y, x.ncols(), |i, _| d[(i, 0)]);
        stacked(self.encode(x), bias)
    }

    /// `f = (-z + T(z, x_enc), -y + D avg(z) + d)`.
    fn vector_field_driven(&self, phi: &DMatrix<f64>, drive: &DMatrix<f64>) -> DMatrix<f64> {
        let (z, y) = self.parts(phi);
        let (x_enc, d) = self.parts(drive);
        let z = z.into_owned();
        let lin = self.fixed_point_map(&z, &x_enc.into_owned());
        let fz = lin.out - &z;
        let fy = mul(self.p(D).as_view(), self.channel_means(&z).0.as_view()) + d - y;
        stacked(fz, fy)
    }

    fn linearize(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        _psi: Option<&DMatrix<f64>>,
    ) -> Self::Linearization {
        let z = self.parts(phi).0.into_owned();
        (
            self.fixed_point_map(&z, &self.encode(x)),
            self.channel_means(&z).1,
        )
    }

    /// `J (dz, dy) = (-dz + dT dz, -dy + D avg(dz))`, dT by the chain rule through the map.
    fn jvp_at(&self, lin: &Self::Linearization, dphi: &DMatrix<f64>) -> DMatrix<f64> {
        let (l, pool) = lin;
        let (dz, dy) = self.parts(dphi);
        let dz = dz.into_owned();
        let da1 = self.conv1.forward(self.p(K1), &dz);
        let dn1 = self.switched_product(1, l.gn1.as_ref(), &da1.component_mul(&l.slope1), false);
        let ds = self.conv2.forward(self.p(K2), &dn1);
        let dt = &dz * self.spec.skip_gain + self.norm_state.jvp(&l.gn2, self.p(GAMMA + 2), &ds);
        let dout = self.switched_product(3, l.gn3.as_ref(), &dt.component_mul(&l.slope3), false);
        let fy = mul(
            self.p(D).as_view(),
            self.readout_pool.jvp(pool, &dz).as_view(),
        ) - dy;
        stacked(dout - dz, fy)
    }

    /// `J^T (wz, wy) = (-wz + dT^T wz + avg^T(D^T wy), -wy)` (with feedback weights: B1, B2
    /// in dT^T's transposed convolutions, `G wy` for `D^T wy`).
    fn vjp_at(&self, lin: &Self::Linearization, w: &DMatrix<f64>) -> DMatrix<f64> {
        let (l, pool) = lin;
        let (wz, wy) = self.parts(w);
        let wz = wz.into_owned();
        let back_y = match &l.feedback {
            Some(fb) => mul(fb.tensor(2).as_view(), wy),
            None => tr_mul(self.p(D).as_view(), wy),
        };
        let gz = self.map_vjp(l, &wz).g_z + self.readout_pool.vjp(pool, &back_y) - &wz;
        stacked(gz, -wy.into_owned())
    }

    /// One evaluation of T for both.
    fn field_and_vjp(
        &self,
        phi: &DMatrix<f64>,
        _x: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        self.field_and_back(phi, drive, w, None)
    }

    /// `(d_theta f)^T psi` through T (encoder, K1, K2, the norms' gamma and beta) and the
    /// readout (`D: psi_y avg(z)^T`, `d: psi_y`), summed over samples.
    fn param_vjp(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>, psi: &DMatrix<f64>) -> Params {
        let z = self.parts(phi).0.into_owned();
        let (pz, py) = self.parts(psi);
        let pz = pz.into_owned();
        let lin = self.fixed_point_map(&z, &self.encode(x));
        let g = self.map_vjp(&lin, &pz);
        let (g3, b3) = self.switched_param_vjp(3, lin.gn3.as_ref(), &pz);
        let (g2, b2) = self.norm_state.param_vjp(&lin.gn2, &g.g_t);
        let (g1, b1) = self.switched_param_vjp(1, lin.gn1.as_ref(), &g.g_n1);
        let b_enc = channel_bias_grad(&g.g_s, self.encoder.out_h() * self.encoder.out_w());
        let means = self.channel_means(&z).0;
        let tensors = [
            self.encoder.weight_grad(&self.pooled_input(x), &g.g_s),
            b_enc,
            self.conv1.weight_grad(&z, &g.g_a1),
            self.conv2.weight_grad(&lin.n1, &g.g_s),
            g1,
            b1,
            g2,
            b2,
            g3,
            b3,
            mul_tr(py, means.as_view()),
            DMatrix::from_column_slice(self.n_y, 1, py.column_sum().as_slice()),
        ];
        Params::new(
            DEQ_PARAM_NAMES
                .iter()
                .zip(tensors)
                .map(|(n, m)| (n.to_string(), m))
                .collect(),
        )
    }

    fn kolen_pollack(&self) -> Option<&dyn KolenPollack<Self::Linearization>> {
        Some(self)
    }

    /// The encoder (once per batch, in the input drive) and the two convolutions of the
    /// fixed-point map.
    fn convolutions(&self) -> Vec<(String, Conv2d)> {
        let named = [
            ("K_enc", self.encoder),
            ("K1", self.conv1),
            ("K2", self.conv2),
        ];
        named.map(|(n, c)| (n.to_string(), c)).into()
    }

    /// The equilibrium feature maps z.
    fn feature_maps(&self) -> Vec<FeatureMapLayout> {
        let (channels, height, width) = self.feature_map();
        vec![FeatureMapLayout {
            name: "z".into(),
            rows: self.feature_rows(),
            channels,
            height,
            width,
        }]
    }
}

impl ConvDeq {
    /// `(f, J^T w)` (or the feedback path's product) with T evaluated once.
    fn field_and_back(
        &self,
        phi: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
        feedback: Option<&Arc<Params>>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        let (z, y) = self.parts(phi);
        let (x_enc, d) = self.parts(drive);
        let z = z.into_owned();
        let mut lin = self.fixed_point_map(&z, &x_enc.into_owned());
        lin.feedback = feedback.cloned();
        let (means, pool) = self.channel_means(&z);
        let fz = &lin.out - &z;
        let fy = mul(self.p(D).as_view(), means.as_view()) + d - y;
        let lin = (lin, pool);
        (stacked(fz, fy), self.vjp_at(&lin, w))
    }
}

impl KolenPollack<(DeqLinearization, PoolLinearization)> for ConvDeq {
    /// B1, B2 normal, each scaled to the Frobenius norm of the kernel it stands in for (the
    /// group norm after each convolution makes T indifferent to a kernel's scale, not the
    /// feedback path: at unit norm it would amplify `J^T` by `1 / |K|`); G (features x n_y)
    /// normal with variance `1 / (n_y features)` as the rate net's (spec 3.2); from `seed`.
    fn init_feedback(&self, seed: u64) -> Params {
        let mut rng = Rng::seed_from_u64(seed);
        let mut kernel = |k: &DMatrix<f64>| {
            let b = DMatrix::from_fn(k.nrows(), k.ncols(), |_, _| rng.normal());
            let norm = b.norm();
            if norm > 0.0 {
                b * (k.norm() / norm)
            } else {
                b
            }
        };
        let (b1, b2) = (kernel(self.p(K1)), kernel(self.p(K2)));
        let features = self.readout_pool.out_len();
        let sd = 1.0 / ((self.n_y * features) as f64).sqrt();
        let g = DMatrix::from_fn(features, self.n_y, |_, _| sd * rng.normal());
        Params::new(vec![("B1".into(), b1), ("B2".into(), b2), ("G".into(), g)])
    }

    /// `(B1: Delta K1, B2: Delta K2, G: (Delta D)^T)`.
    fn transposed_update(&self, update: &Params) -> Params {
        Params::new(vec![
            ("B1".into(), update.tensor(K1).clone()),
            ("B2".into(), update.tensor(K2).clone()),
            ("G".into(), update.tensor(D).transpose()),
        ])
    }

    fn linearize_with_feedback(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        psi: Option<&DMatrix<f64>>,
        feedback: &Arc<Params>,
    ) -> (DeqLinearization, PoolLinearization) {
        let (mut lin, pool) = self.linearize(phi, x, psi);
        lin.feedback = Some(feedback.clone());
        (lin, pool)
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

    /// The angles between B1 and K1, B2 and K2, G and D^T.
    fn feedback_angles(&self, feedback: &Params) -> Vec<f64> {
        vec![
            angle_degrees(feedback.tensor(0), self.p(K1)),
            angle_degrees(feedback.tensor(1), self.p(K2)),
            angle_degrees(feedback.tensor(2), &self.p(D).transpose()),
        ]
    }

    /// K1, K2, D and d (the weights the feedback stands in for, and the readout's bias, as
    /// the rate net's W, b, D, d); the encoder and the group norms' gamma, beta do not decay.
    fn decaying_params(&self) -> Vec<usize> {
        vec![K1, K2, D, D_BIAS]
    }
}
