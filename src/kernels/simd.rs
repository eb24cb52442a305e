//! The one way to reach AVX2 code. [`Avx2Fma`] is a token that only runtime
//! feature detection hands out, so holding one proves the CPU has AVX2 and FMA;
//! a kernel written once, generic over [`Simd`], is compiled with those features
//! by [`Avx2Fma::vectorize`] (which takes the token) and without them for
//! [`Scalar`], its twin on any CPU. No safe function reaches AVX2 code without
//! the token (the style of `pulp`, without the crate).
//!
//! The twins differ in one thing only: where `S::FMA`, [`Simd::madd`] is a fused
//! multiply-add (one rounding), else a multiply then an add; everything else is
//! the same operations in the same order, so the twins agree to a rounding per
//! multiply-add (tested beside each kernel).

/// Proof that this CPU has AVX2 and FMA: made only by [`Avx2Fma::detect`].
#[derive(Clone, Copy, Debug)]
pub struct Avx2Fma {
    _detected: (),
}

impl Avx2Fma {
    /// The token, where the CPU running this process has AVX2 and FMA.
    pub fn detect() -> Option<Avx2Fma> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some(Avx2Fma { _detected: () });
        }
        None
    }

    /// Runs `kernel` for [`Avx2Fma`], compiled with AVX2 and FMA enabled: its
    /// `run` is inlined (`#[inline(always)]`) into a function that has them.
    #[inline(always)]
    pub fn vectorize<K: Kernel>(self, kernel: K) -> K::Output {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            fn with_avx2_fma<K: Kernel>(simd: Avx2Fma, kernel: K) -> K::Output {
                kernel.run(simd)
            }
            // SAFETY: `self` exists, so `detect` found AVX2 and FMA on this CPU.
            unsafe { with_avx2_fma(self, kernel) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        kernel.run(self)
    }
}

/// Any CPU: multiply-adds rounded twice, no target features.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scalar;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Scalar {}
    impl Sealed for super::Avx2Fma {}
}

/// The instruction set a kernel instance is compiled for: [`Scalar`] or
/// [`Avx2Fma`] (sealed: no other).
pub trait Simd: Copy + Send + Sync + sealed::Sealed {
    /// Whether multiply-adds are fused.
    const FMA: bool;

    /// The AVX2 token where this is it: the way to kernels written in AVX2
    /// intrinsics.
    fn avx2(self) -> Option<Avx2Fma>;

    /// a·b + c, fused where [`Simd::FMA`].
    #[inline(always)]
    fn madd(a: f32, b: f32, c: f32) -> f32 {
        if Self::FMA {
            a.mul_add(b, c)
        } else {
            a * b + c
        }
    }
}

impl Simd for Scalar {
    const FMA: bool = false;

    #[inline(always)]
    fn avx2(self) -> Option<Avx2Fma> {
        None
    }
}

impl Simd for Avx2Fma {
    const FMA: bool = true;

    #[inline(always)]
    fn avx2(self) -> Option<Avx2Fma> {
        Some(self)
    }
}

/// A computation with a scalar and an AVX2 twin: its arguments, and `run`, which
/// every implementation marks `#[inline(always)]` so that [`Avx2Fma::vectorize`]
/// compiles it (and what it inlines) with AVX2 and FMA.
pub trait Kernel {
    type Output;
    fn run<S: Simd>(self, simd: S) -> Self::Output;
}

/// Runs `kernel` on the AVX2 twin where `simd` holds the token, else the scalar one.
#[inline(always)]
pub fn dispatch<K: Kernel>(simd: Option<Avx2Fma>, kernel: K) -> K::Output {
    match simd {
        Some(avx2) => avx2.vectorize(kernel),
        None => kernel.run(Scalar),
    }
}

/// The token for a test of a SIMD twin against its scalar one: `None` (with a
/// note) on a CPU without AVX2 and FMA, where the test then checks nothing; under
/// `CI` such a CPU fails the test instead, so that CI never passes unchecked.
#[cfg(test)]
pub fn avx2_for_test() -> Option<Avx2Fma> {
    let simd = Avx2Fma::detect();
    if simd.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but this CPU lacks AVX2 or FMA: the SIMD twins go untested"
        );
        eprintln!("note: no AVX2 and FMA on this CPU; SIMD twin not tested");
    }
    simd
}
