//! Batched 2-D convolution (any stride, zero padding) by im2col and the faer products of
//! [`super::linalg`], with its transpose and weight gradient.
//!
//! Layout: a batch of images is a matrix with one column per sample; within a column the
//! entries are channel-major, then row, then column: index `(c * h + y) * w + x`.
//! The weights are an `out_c x (in_c k k)` matrix, column index `(c * k + dy) * k + dx`.

use super::linalg::{gemm, mul_tr, Op};
use nalgebra::DMatrix;

/// A convolution shape that cannot be computed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConvError {
    /// A size is zero or the kernel is larger than the padded image.
    #[error("conv2d: {field} = {value} is not allowed ({allowed})")]
    Shape {
        field: &'static str,
        value: usize,
        allowed: &'static str,
    },
}

/// The sizes of one convolution layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub in_c: usize,
    pub out_c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub pad: usize,
    pub stride: usize,
}

impl Conv2d {
    /// A stride-1 convolution; checks the sizes: all positive and `k <= h + 2 pad`,
    /// `k <= w + 2 pad`.
    pub fn new(
        in_c: usize,
        out_c: usize,
        h: usize,
        w: usize,
        k: usize,
        pad: usize,
    ) -> Result<Self, ConvError> {
        for (field, value) in [
            ("in_c", in_c),
            ("out_c", out_c),
            ("h", h),
            ("w", w),
            ("k", k),
        ] {
            if value == 0 {
                return Err(ConvError::Shape {
                    field,
                    value,
                    allowed: "at least 1",
                });
            }
        }
        if k > h + 2 * pad || k > w + 2 * pad {
            return Err(ConvError::Shape {
                field: "k",
                value: k,
                allowed: "at most the padded height and width",
            });
        }
        Ok(Conv2d {
            in_c,
            out_c,
            h,
            w,
            k,
            pad,
            stride: 1,
        })
    }

    /// The same convolution with output pixel `(oy, ox)` reading the patch at
    /// `(stride oy - pad, stride ox - pad)`; `stride >= 1`.
    pub fn with_stride(self, stride: usize) -> Result<Self, ConvError> {
        if stride == 0 {
            return Err(ConvError::Shape {
                field: "stride",
                value: 0,
                allowed: "at least 1",
            });
        }
        Ok(Conv2d { stride, ..self })
    }

    /// Output height `(h + 2 pad - k) / stride + 1`.
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Output width `(w + 2 pad - k) / stride + 1`.
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Rows of an input batch, `in_c h w`.
    pub fn in_len(&self) -> usize {
        self.in_c * self.h * self.w
    }

    /// Rows of an output batch, `out_c out_h out_w`.
    pub fn out_len(&self) -> usize {
        self.out_c * self.out_h() * self.out_w()
    }

    /// Weight columns, `in_c k k`.
    pub fn patch_len(&self) -> usize {
        self.in_c * self.k * self.k
    }

    /// im2col: `cols[(c k + dy) k + dx, b P + oy out_w + ox] = x[(c h + s oy + dy - pad) w + s ox + dx - pad, b]`
    /// (zero outside the image), `P = out_h out_w`, s the stride.
    pub fn im2col(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let mut cols = DMatrix::zeros(self.patch_len(), self.out_h() * self.out_w() * x.ncols());
        let (src, dst) = (x.as_slice(), cols.as_mut_slice());
        self.for_each_patch_run(x.ncols(), |entry, pixel, len| {
            dst[entry..entry + len].copy_from_slice(&src[pixel..pixel + len]);
        });
        cols
    }

    /// col2im, the transpose of [`Self::im2col`]: sums every patch entry back onto its input pixel.
    pub fn col2im(&self, cols: &DMatrix<f64>, batch: usize) -> DMatrix<f64> {
        let mut x = DMatrix::zeros(self.in_len(), batch);
        let (src, dst) = (cols.as_slice(), x.as_mut_slice());
        self.for_each_patch_run(batch, |entry, pixel, len| {
            for (d, s) in dst[pixel..pixel + len]
                .iter_mut()
                .zip(&src[entry..entry + len])
            {
                *d += s;
            }
        });
        x
    }

    /// Calls `visit(entry, pixel, len)` for every run of im2col entries inside the image
    /// (a kernel row's columns dx that fall inside the image): entries `entry .. entry + len`
    /// of `cols`' storage are input pixels `pixel .. pixel + len` of `x`'s storage, where the
    /// entry `(c k + dy) k + dx` of im2col column `b P + oy out_w + ox` reads pixel
    /// `(c h + s oy + dy - pad) w + s ox + dx - pad` of sample b (s the stride; column-major
    /// offsets). Runs come in the order of the columns, then c, dy, dx.
    fn for_each_patch_run(&self, batch: usize, mut visit: impl FnMut(usize, usize, usize)) {
        let (oh, ow, k, s) = (self.out_h(), self.out_w(), self.k, self.stride);
        let (pl, il) = (self.patch_len(), self.in_len());
        for b in 0..batch {
            for oy in 0..oh {
                for ox in 0..ow {
                    let col = ((b * oh + oy) * ow + ox) * pl;
                    // The kernel's columns dx that fall inside the image at this ox.
                    let x0 = ox * s;
                    let dx_lo = self.pad.saturating_sub(x0);
                    let dx_hi = k.min((self.w + self.pad).saturating_sub(x0));
                    if dx_hi <= dx_lo {
                        continue;
                    }
                    for c in 0..self.in_c {
                        for dy in 0..k {
                            let Some(y) = (oy * s + dy).checked_sub(self.pad) else {
                                continue;
                            };
                            if y >= self.h {
                                continue;
                            }
                            let row = (c * k + dy) * k;
                            let base = (c * self.h + y) * self.w + x0;
                            visit(
                                col + row + dx_lo,
                                b * il + base + dx_lo - self.pad,
                                dx_hi - dx_lo,
                            );
                        }
                    }
                }
            }
        }
    }

    /// `out_c x (P B)` product layout to the batch layout (`(o P + q, b)`).
    fn product_to_batch(&self, m: &DMatrix<f64>, batch: usize) -> DMatrix<f64> {
        let (p, oc, ol) = (self.out_h() * self.out_w(), self.out_c, self.out_len());
        let mut out = DMatrix::zeros(ol, batch);
        let (src, dst) = (m.as_slice(), out.as_mut_slice());
        for (j, column) in src.chunks_exact(oc).enumerate() {
            let (b, q) = (j / p, j % p);
            for (o, &v) in column.iter().enumerate() {
                dst[b * ol + o * p + q] = v;
            }
        }
        out
    }

    /// Batch layout to the `out_c x (P B)` product layout.
    fn batch_to_product(&self, g: &DMatrix<f64>) -> DMatrix<f64> {
        let (p, oc, ol) = (self.out_h() * self.out_w(), self.out_c, self.out_len());
        let mut m = DMatrix::zeros(oc, p * g.ncols());
        let (src, dst) = (g.as_slice(), m.as_mut_slice());
        for (j, column) in dst.chunks_exact_mut(oc).enumerate() {
            let (b, q) = (j / p, j % p);
            for (o, v) in column.iter_mut().enumerate() {
                *v = src[b * ol + o * p + q];
            }
        }
        m
    }

    /// `y[(o, oy, ox), b] = sum_{c,dy,dx} W[o, (c,dy,dx)] x[(c, s oy+dy-pad, s ox+dx-pad), b]`.
    pub fn forward(&self, weights: &DMatrix<f64>, x: &DMatrix<f64>) -> DMatrix<f64> {
        let cols = self.im2col(x);
        let mut m = DMatrix::zeros(self.out_c, cols.ncols());
        gemm(
            &mut m,
            1.0,
            weights.as_view(),
            Op::Plain,
            cols.as_view(),
            false,
        );
        self.product_to_batch(&m, x.ncols())
    }

    /// The transpose in the input, `x = C(W)^T g`: `col2im(W^T g)`.
    pub fn transpose(&self, weights: &DMatrix<f64>, g: &DMatrix<f64>) -> DMatrix<f64> {
        let gm = self.batch_to_product(g);
        let mut cols = DMatrix::zeros(self.patch_len(), gm.ncols());
        gemm(
            &mut cols,
            1.0,
            weights.as_view(),
            Op::Transposed,
            gm.as_view(),
            false,
        );
        self.col2im(&cols, g.ncols())
    }

    /// The weight gradient of `<g, C(W) x>`, summed over the batch: `g im2col(x)^T`.
    pub fn weight_grad(&self, x: &DMatrix<f64>, g: &DMatrix<f64>) -> DMatrix<f64> {
        mul_tr(self.batch_to_product(g).as_view(), self.im2col(x).as_view())
    }
}

/// A per-channel bias (`channels x 1`) broadcast over each channel's `spatial` entries and
/// `batch` columns (channel-major rows, as every batch here).
pub fn broadcast_channel_bias(bias: &DMatrix<f64>, spatial: usize, batch: usize) -> DMatrix<f64> {
    DMatrix::from_fn(bias.nrows() * spatial, batch, |i, _| bias[(i / spatial, 0)])
}

/// The gradient of `<g, broadcast_channel_bias(b)>` in b: g summed over each channel's
/// `spatial` entries and the batch.
pub fn channel_bias_grad(g: &DMatrix<f64>, spatial: usize) -> DMatrix<f64> {
    let mut grad = DMatrix::zeros(g.nrows() / spatial, 1);
    for (i, row) in g.row_iter().enumerate() {
        grad[(i / spatial, 0)] += row.sum();
    }
    grad
}
