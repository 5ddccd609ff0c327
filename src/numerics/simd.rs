//! Elementwise loops compiled for the widest vector unit of the processor at run time: the
//! crate is built for the x86-64 baseline (SSE2), so a loop over slices runs 2 lanes wide
//! unless it is compiled again with AVX-512 or AVX2 enabled. The same IEEE operations run in
//! wider registers (Rust never fuses a multiply and an add), so results do not depend on
//! the processor.

/// Defines a free function whose body is compiled three times (AVX-512F, AVX2, baseline) and
/// dispatched by what the processor has. The body may call `#[inline(always)]` functions
/// only (they are compiled inside each version); closures and other calls run unwidened.
macro_rules! widest_fn {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the processor has AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the processor has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}
pub(crate) use widest_fn;

widest_fn! {
    /// `z += dt * r` entrywise (`z + r * dt`, as the Euler step with unit time constants).
    pub fn add_scaled(z: &mut [f64], r: &[f64], dt: f64) {
        for (z, r) in z.iter_mut().zip(r) {
            *z += r * dt;
        }
    }
}

widest_fn! {
    /// [`add_scaled`] in single precision.
    pub fn add_scaled_f32(z: &mut [f32], r: &[f32], dt: f32) {
        for (z, r) in z.iter_mut().zip(r) {
            *z += r * dt;
        }
    }
}
