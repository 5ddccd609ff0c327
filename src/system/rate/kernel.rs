//! The rate network's hot loops, written once for f64 and f32 ([`Real`]): the rates and
//! slopes, the driven field `f = -phi + (W s, D s) + drive` and the transposed product
//! `J^T w`, on views of the weights (f64: the network's own; f32: rounded copies).

use crate::numerics::activation::Activation;
use crate::numerics::linalg::{gemm, Op};
use crate::numerics::real::Real;
use crate::system::{FieldKernels, SinglePrecision};
use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut};

/// What the hot loops read: W, D and the nonlinearity, in f64 (views of the network's
/// parameters) or in f32 (rounded copies, [`SingleRate`]). f64 and f32 run this same code.
pub(super) struct RateKernel<'a, T: Real> {
    pub(super) w: DMatrixView<'a, T>,
    pub(super) d: DMatrixView<'a, T>,
    pub(super) activation: Activation,
}

impl<T: Real> RateKernel<'_, T> {
    /// Rates s(v) of the hidden rows of phi, a column at a time ([`Real::rates_into`]).
    pub(super) fn rates_of(&self, phi: DMatrixView<'_, T>) -> DMatrix<T> {
        let n_h = self.w.nrows();
        let mut s = DMatrix::zeros(n_h, phi.ncols());
        for (j, mut col) in s.column_iter_mut().enumerate() {
            let v = phi.column(j);
            T::rates_into(self.activation, &v.as_slice()[..n_h], col.as_mut_slice());
        }
        s
    }

    /// The rates s(v) and slopes s'(v) of the hidden rows of phi (n_h x B each).
    pub(super) fn rates_and_slopes(&self, phi: DMatrixView<'_, T>) -> (DMatrix<T>, DMatrix<T>) {
        let a = self.activation;
        let v = phi.rows(0, self.w.nrows());
        let s = self.rates_of(phi);
        let slopes = v.zip_map(&s, |v, s| a.slope_at_rate(v, s));
        (s, slopes)
    }

    /// `f = -phi + (W s, D s) + drive` for rates s = s(v), written into `out`: `out = (W s,
    /// D s)`, then `out += drive - phi` elementwise (no temporaries).
    pub(super) fn driven_field_into(
        &self,
        phi: DMatrixView<'_, T>,
        drive: &DMatrix<T>,
        s: &DMatrix<T>,
        mut out: DMatrixViewMut<'_, T>,
    ) {
        let (n_h, n_y, one) = (self.w.nrows(), self.d.nrows(), T::round_from(1.0));
        let s = s.as_view();
        gemm(&mut out.rows_mut(0, n_h), one, self.w, Op::Plain, s, false);
        gemm(
            &mut out.rows_mut(n_h, n_y),
            one,
            self.d,
            Op::Plain,
            s,
            false,
        );
        out.zip_zip_apply(drive, &phi, |o, d, p| *o = *o + d - p);
    }

    /// `J^T w = (-wv + s'(v) * (W^T wv + D^T wy), -wy)` for the slopes s'(v), written into
    /// `out` (`B wv + G wy` with learned feedback weights (B, G)): the products go straight
    /// into the hidden rows, then `out_v = -wv + s'(v) * out_v`, `out_y = -wy`.
    pub(super) fn adjoint_into(
        &self,
        slopes: &DMatrix<T>,
        w: &DMatrix<T>,
        learned: Option<(DMatrixView<'_, T>, DMatrixView<'_, T>)>,
        mut out: DMatrixViewMut<'_, T>,
    ) {
        let (n_h, n_y, one) = (self.w.nrows(), self.d.nrows(), T::round_from(1.0));
        let (wv, wy) = (w.rows(0, n_h), w.rows(n_h, n_y));
        let (first, second, op) = match learned {
            None => (self.w, self.d, Op::Transposed),
            Some((b, g)) => (b, g, Op::Plain),
        };
        {
            let mut back = out.rows_mut(0, n_h);
            gemm(&mut back, one, first, op, wv, false);
            gemm(&mut back, one, second, op, wy, true);
            back.zip_zip_apply(&wv, slopes, |o, wv, sl| *o = -wv + sl * *o);
        }
        out.rows_mut(n_h, n_y).zip_apply(&wy, |o, wy| *o = -wy);
    }
}

impl<T: Real> FieldKernels<T> for RateKernel<'_, T> {
    fn vector_field_driven_into(
        &self,
        phi: DMatrixView<'_, T>,
        drive: &DMatrix<T>,
        out: DMatrixViewMut<'_, T>,
    ) {
        let s = self.rates_of(phi);
        self.driven_field_into(phi, drive, &s, out);
    }

    /// One pass for both: s(v) and s'(v) are computed once.
    fn field_and_vjp_into(
        &self,
        phi: DMatrixView<'_, T>,
        drive: &DMatrix<T>,
        w: &DMatrix<T>,
        f: DMatrixViewMut<'_, T>,
        back: DMatrixViewMut<'_, T>,
    ) {
        let (s, slopes) = self.rates_and_slopes(phi);
        self.adjoint_into(&slopes, w, None, back);
        self.driven_field_into(phi, drive, &s, f);
    }
}

/// The rate network in single precision: W and D rounded to f32 (once per chunk of a solve).
pub(super) struct SingleRate {
    pub(super) w: DMatrix<f32>,
    pub(super) d: DMatrix<f32>,
    pub(super) activation: Activation,
}

impl SingleRate {
    fn kernel(&self) -> RateKernel<'_, f32> {
        RateKernel {
            w: self.w.as_view(),
            d: self.d.as_view(),
            activation: self.activation,
        }
    }
}

impl FieldKernels<f32> for SingleRate {
    fn vector_field_driven_into(
        &self,
        phi: DMatrixView<'_, f32>,
        drive: &DMatrix<f32>,
        out: DMatrixViewMut<'_, f32>,
    ) {
        self.kernel().vector_field_driven_into(phi, drive, out);
    }

    fn field_and_vjp_into(
        &self,
        phi: DMatrixView<'_, f32>,
        drive: &DMatrix<f32>,
        w: &DMatrix<f32>,
        f: DMatrixViewMut<'_, f32>,
        back: DMatrixViewMut<'_, f32>,
    ) {
        self.kernel().field_and_vjp_into(phi, drive, w, f, back);
    }
}

impl SinglePrecision for SingleRate {
    /// The slopes s'(v).
    fn linearization(&self, phi: DMatrixView<'_, f32>) -> DMatrix<f32> {
        self.kernel().rates_and_slopes(phi).1
    }

    fn vjp_linearized_into(
        &self,
        slopes: &DMatrix<f32>,
        w: &DMatrix<f32>,
        out: DMatrixViewMut<'_, f32>,
    ) {
        self.kernel().adjoint_into(slopes, w, None, out);
    }
}
