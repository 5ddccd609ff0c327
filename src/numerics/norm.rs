//! Group normalisation of a batch of feature maps, per sample (no statistics shared across
//! the batch, so every sample keeps its own equilibrium), with its exact Jacobian products:
//!
//! ```text
//! y = gamma_c * xhat + beta_c,   xhat = (x - mu_g) / sigma_g,   sigma_g = sqrt(var_g + eps)
//! dxhat = (dx - mean_g(dx) - xhat * mean_g(xhat * dx)) / sigma_g
//! ```
//!
//! over the `m = (channels / groups) h w` entries of group g of one sample. The map
//! `dx -> dxhat` is symmetric, so `J^T g` is the same operator applied to `gamma * g`.
//! Layout as in [`super::conv`]: channel-major columns, so a group is a block of rows.

use super::conv::ConvError;
use nalgebra::DMatrix;

/// The sizes of one group normalisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNorm {
    pub channels: usize,
    pub groups: usize,
    /// Entries per channel (h w).
    pub spatial: usize,
    pub eps: f64,
}

/// The normalised input and each (group, sample)'s `1 / sigma`, for the Jacobian products.
#[derive(Clone, Debug)]
pub struct NormLinearization {
    xhat: DMatrix<f64>,
    inv_std: DMatrix<f64>,
}

impl NormLinearization {
    /// The normalised input `xhat`.
    pub fn normalized(&self) -> &DMatrix<f64> {
        &self.xhat
    }
}

impl GroupNorm {
    /// Checks the sizes: positive, `groups` divides `channels`, `eps > 0`.
    pub fn new(
        channels: usize,
        groups: usize,
        spatial: usize,
        eps: f64,
    ) -> Result<Self, ConvError> {
        for (field, value) in [
            ("channels", channels),
            ("groups", groups),
            ("spatial", spatial),
        ] {
            if value == 0 {
                return Err(ConvError::Shape {
                    field,
                    value,
                    allowed: "at least 1",
                });
            }
        }
        if !channels.is_multiple_of(groups) {
            return Err(ConvError::Shape {
                field: "groups",
                value: groups,
                allowed: "a divisor of the channel count",
            });
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(ConvError::Shape {
                field: "eps",
                value: 0,
                allowed: "a positive finite number",
            });
        }
        Ok(GroupNorm {
            channels,
            groups,
            spatial,
            eps,
        })
    }

    /// Rows of a batch, `channels spatial`.
    pub fn len(&self) -> usize {
        self.channels * self.spatial
    }

    /// Always false (sizes are positive).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Entries per group and sample.
    fn group_len(&self) -> usize {
        self.len() / self.groups
    }

    /// `y = gamma xhat + beta` and the linearisation at x (`gamma`, `beta`: channels x 1).
    pub fn forward(
        &self,
        x: &DMatrix<f64>,
        gamma: &DMatrix<f64>,
        beta: &DMatrix<f64>,
    ) -> (DMatrix<f64>, NormLinearization) {
        let m = self.group_len();
        let mut xhat = DMatrix::zeros(x.nrows(), x.ncols());
        let mut inv_std = DMatrix::zeros(self.groups, x.ncols());
        let groups = x.as_slice().chunks_exact(m);
        let normalized = xhat.as_mut_slice().chunks_exact_mut(m);
        for ((part, out), inv_out) in groups.zip(normalized).zip(inv_std.as_mut_slice()) {
            let mean = part.iter().sum::<f64>() / m as f64;
            let var = part.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / m as f64;
            let inv = 1.0 / (var + self.eps).sqrt();
            *inv_out = inv;
            for (o, v) in out.iter_mut().zip(part) {
                *o = (v - mean) * inv;
            }
        }
        let y = self.affine(&xhat, gamma, Some(beta));
        (y, NormLinearization { xhat, inv_std })
    }

    /// `gamma_c * v + beta_c` per channel (`beta` optional).
    fn affine(
        &self,
        v: &DMatrix<f64>,
        gamma: &DMatrix<f64>,
        beta: Option<&DMatrix<f64>>,
    ) -> DMatrix<f64> {
        let mut out = v.clone();
        let per_channel = out.as_mut_slice().chunks_exact_mut(self.spatial);
        for (k, part) in per_channel.enumerate() {
            let c = k % self.channels;
            let (g, b) = (gamma[(c, 0)], beta.map_or(0.0, |beta| beta[(c, 0)]));
            part.iter_mut().for_each(|e| *e = g * *e + b);
        }
        out
    }

    /// `dx -> dxhat`, the symmetric Jacobian of the normalisation (module doc).
    fn normalized_jvp(&self, lin: &NormLinearization, dx: &DMatrix<f64>) -> DMatrix<f64> {
        let m = self.group_len();
        let mut out = DMatrix::zeros(dx.nrows(), dx.ncols());
        let parts = dx.as_slice().chunks_exact(m);
        let xhats = lin.xhat.as_slice().chunks_exact(m);
        let outs = out.as_mut_slice().chunks_exact_mut(m);
        for (((d, xh), o), inv) in parts.zip(xhats).zip(outs).zip(lin.inv_std.as_slice()) {
            let mean = d.iter().sum::<f64>() / m as f64;
            let mean_xd = xh.iter().zip(d).map(|(a, b)| a * b).sum::<f64>() / m as f64;
            for ((o, d), xh) in o.iter_mut().zip(d).zip(xh) {
                *o = (d - mean - xh * mean_xd) * inv;
            }
        }
        out
    }

    /// The Jacobian product `J dx = gamma * dxhat`.
    pub fn jvp(
        &self,
        lin: &NormLinearization,
        gamma: &DMatrix<f64>,
        dx: &DMatrix<f64>,
    ) -> DMatrix<f64> {
        self.affine(&self.normalized_jvp(lin, dx), gamma, None)
    }

    /// The transposed product `J^T g`: the normalisation's Jacobian applied to `gamma * g`.
    pub fn vjp(
        &self,
        lin: &NormLinearization,
        gamma: &DMatrix<f64>,
        g: &DMatrix<f64>,
    ) -> DMatrix<f64> {
        self.normalized_jvp(lin, &self.affine(g, gamma, None))
    }

    /// The gradients of `<g, y>` in gamma and beta, summed over the batch:
    /// `(sum g * xhat, sum g)` per channel.
    pub fn param_vjp(
        &self,
        lin: &NormLinearization,
        g: &DMatrix<f64>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        let mut dgamma = DMatrix::zeros(self.channels, 1);
        let mut dbeta = DMatrix::zeros(self.channels, 1);
        for b in 0..g.ncols() {
            for i in 0..g.nrows() {
                let c = i / self.spatial;
                dgamma[(c, 0)] += g[(i, b)] * lin.xhat[(i, b)];
                dbeta[(c, 0)] += g[(i, b)];
            }
        }
        (dgamma, dbeta)
    }
}
