//! Batched 2-D pooling over square windows (no padding), with its Jacobian products.
//!
//! Layout as in [`super::conv`]: one column per sample, entries channel-major, then row, then
//! column. Max pooling is piecewise linear: its Jacobian at x selects, for every output, the
//! input that holds the window's maximum (the first one on ties, as PyTorch), so the
//! linearisation stores those indices. Average pooling is linear.

use super::conv::ConvError;
use nalgebra::DMatrix;

/// Which statistic a window yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    /// `y = max over the window`.
    Max,
    /// `y = mean over the window`.
    Avg,
}

/// The sizes of one pooling layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub kind: PoolKind,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub size: usize,
    pub stride: usize,
}

/// What the Jacobian products of a pooling layer need at x: for max pooling the input row
/// each output reads (one column per sample); nothing for average pooling.
#[derive(Clone, Debug)]
pub struct PoolLinearization {
    argmax: Option<Vec<u32>>,
    batch: usize,
}

impl Pool2d {
    /// Checks the sizes: all positive and the window within the image.
    pub fn new(
        kind: PoolKind,
        channels: usize,
        h: usize,
        w: usize,
        size: usize,
        stride: usize,
    ) -> Result<Self, ConvError> {
        for (field, value) in [
            ("channels", channels),
            ("h", h),
            ("w", w),
            ("pool size", size),
            ("pool stride", stride),
        ] {
            if value == 0 {
                return Err(ConvError::Shape {
                    field,
                    value,
                    allowed: "at least 1",
                });
            }
        }
        if size > h || size > w {
            return Err(ConvError::Shape {
                field: "pool size",
                value: size,
                allowed: "at most the image's height and width",
            });
        }
        Ok(Pool2d {
            kind,
            channels,
            h,
            w,
            size,
            stride,
        })
    }

    /// Output height `(h - size) / stride + 1`.
    pub fn out_h(&self) -> usize {
        (self.h - self.size) / self.stride + 1
    }

    /// Output width `(w - size) / stride + 1`.
    pub fn out_w(&self) -> usize {
        (self.w - self.size) / self.stride + 1
    }

    /// Rows of an input batch, `channels h w`.
    pub fn in_len(&self) -> usize {
        self.channels * self.h * self.w
    }

    /// Rows of an output batch, `channels out_h out_w`.
    pub fn out_len(&self) -> usize {
        self.channels * self.out_h() * self.out_w()
    }

    /// Calls `visit(output row, input rows of its window)` for every output row.
    fn for_each_window(&self, mut visit: impl FnMut(usize, &[usize])) {
        let (oh, ow, s) = (self.out_h(), self.out_w(), self.size);
        let mut window = Vec::with_capacity(s * s);
        for c in 0..self.channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    window.clear();
                    for dy in 0..s {
                        for dx in 0..s {
                            let (y, x) = (oy * self.stride + dy, ox * self.stride + dx);
                            window.push((c * self.h + y) * self.w + x);
                        }
                    }
                    visit((c * oh + oy) * ow + ox, &window);
                }
            }
        }
    }

    /// The pooled batch and the linearisation at x.
    pub fn forward(&self, x: &DMatrix<f64>) -> (DMatrix<f64>, PoolLinearization) {
        let batch = x.ncols();
        let mut y = DMatrix::zeros(self.out_len(), batch);
        let mut argmax = (self.kind == PoolKind::Max).then(|| vec![0u32; self.out_len() * batch]);
        let mean = 1.0 / (self.size * self.size) as f64;
        for b in 0..batch {
            let col = x.column(b);
            self.for_each_window(|o, window| match &mut argmax {
                Some(arg) => {
                    let mut best = window[0];
                    for &i in &window[1..] {
                        if col[i] > col[best] {
                            best = i;
                        }
                    }
                    y[(o, b)] = col[best];
                    arg[b * self.out_len() + o] = best as u32;
                }
                None => y[(o, b)] = window.iter().map(|&i| col[i]).sum::<f64>() * mean,
            });
        }
        (y, PoolLinearization { argmax, batch })
    }

    /// The Jacobian product `J dx` at the linearisation point.
    pub fn jvp(&self, lin: &PoolLinearization, dx: &DMatrix<f64>) -> DMatrix<f64> {
        match &lin.argmax {
            Some(arg) => DMatrix::from_fn(self.out_len(), lin.batch, |o, b| {
                dx[(arg[b * self.out_len() + o] as usize, b)]
            }),
            None => self.forward(dx).0,
        }
    }

    /// The transposed product `J^T g` at the linearisation point (each output's value goes
    /// back to the input it read: the argmax, or evenly over the window).
    pub fn vjp(&self, lin: &PoolLinearization, g: &DMatrix<f64>) -> DMatrix<f64> {
        let mut dx = DMatrix::zeros(self.in_len(), lin.batch);
        match &lin.argmax {
            Some(arg) => {
                for b in 0..lin.batch {
                    for o in 0..self.out_len() {
                        dx[(arg[b * self.out_len() + o] as usize, b)] += g[(o, b)];
                    }
                }
            }
            None => {
                let mean = 1.0 / (self.size * self.size) as f64;
                for b in 0..lin.batch {
                    self.for_each_window(|o, window| {
                        for &i in window {
                            dx[(i, b)] += g[(o, b)] * mean;
                        }
                    });
                }
            }
        }
        dx
    }
}
