//! Every hand-written numerical kernel, and all of the crate's `unsafe`.
//!
//! initlab runs thousands of small networks, where libtorch's per-op overhead,
//! not arithmetic, would take the time; these kernels take it back. Each takes
//! checked slices ([`tensor_slice`] turns a tensor into one), reaches its AVX2
//! code only through the [`simd::Avx2Fma`] token that runtime detection hands
//! out, and is tested against its scalar twin on the same inputs. Outside this
//! module the crate is safe Rust: Cargo.toml denies `unsafe_code` for the whole
//! package, and only this module allows it.
//!
//! # Which path runs
//!
//! | work | networks | path | why |
//! |---|---|---|---|
//! | statistics of unit 0 (`kind: variance`) | no normalisation, width ≤ 16, depth ≥ 1 | [`fused::unit0_moments`]; the first layer a libtorch GEMM | libtorch runs each member's `[10, n] × [10, 10]` layer as its own tiny GEMM plus a ReLU pass over memory; here all hidden layers run in registers |
//! | statistics | otherwise, or `all_units`, or `kurtosis` | libtorch ops (`experiment::variance`) | wide GEMMs are libtorch's strength |
//! | training | no normalisation, width ≤ 16, depth ≥ 1 | [`narrow`] for the hidden layers, loss and backward pass; the first layer a libtorch batched GEMM; [`adam`] | per-member tiny GEMMs and one autograd node per op cost more than the arithmetic |
//! | training | no normalisation, width > 16 or depth 0, MKL in libtorch | [`wide::member_step`], one member per rayon thread through single-threaded MKL ([`blas`]) | no GEMM waits on OpenMP's threads, no ensemble-wide gradient buffer goes through memory, a member's weights stay in cache |
//! | training | as above, no MKL (or `INITLAB_NO_MKL`) | libtorch batched GEMMs into buffers allocated once, [`wide`]'s loops for activation and loss, [`adam`] | fresh tensors every step cost page faults |
//! | training | layer or batch norm | libtorch autograd, [`adam`] | |
//! | test-set evaluation | as training | [`fused::evaluate`]; [`wide::evaluate_member`] in chunks of 512 samples (MKL); batched libtorch chunks of ~24 MB; libtorch ops (norm) | as training |
//! | MetaInit | width ≤ 256, `batch` a multiple of 32 | [`metainit::step_lanes`]: products of 64 or more rows and columns through MKL where present, smaller ones in its own loops | the third-order graph is thousands of tiny products per step for libtorch |
//! | MetaInit | otherwise | libtorch's third-order autograd (`init::metainit`) | |
//!
//! The batch size matters only to MetaInit's kernel (lanes of 32 samples); the
//! training kernels take any batch. `train::train` and `train::evaluate` choose
//! among the training and evaluation paths, `experiment::variance::layer_moments`
//! among the statistics ones, `init::metainit` between its two; `TrainOptions`'s
//! `force_autograd` takes autograd anyway (for tests). Every path agrees with
//! libtorch's autograd or plain ops within f32 rounding (tests/ensemble.rs);
//! docs/kernels.md says more on each and on MetaInit's derivation.
//!
//! # Files
//!
//! [`simd`] (the token and the scalar/AVX2 twins), [`tensor`] (tensor to slice),
//! [`blas`] (MKL's GEMM), [`alloc`] (allocator tuning), [`fused`], [`narrow`],
//! [`wide`], [`adam`] and [`metainit`] (its step, split by concern).

#![allow(unsafe_code)]

pub mod adam;
pub mod alloc;
pub mod blas;
pub mod fused;
pub mod metainit;
pub mod narrow;
pub mod simd;
pub mod tensor;
pub mod wide;

pub use alloc::tune_allocator;
pub use tensor::{
    SliceError, tensor_slice, tensor_slice_mut, try_tensor_slice, try_tensor_slice_mut,
};

/// `n` values uniform in [−scale, scale) from a generator seeded by `seed`: the
/// inputs of the kernels' tests.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Whether `a` and `b` agree within `tol` times `scale`, element by element.
#[cfg(test)]
pub(crate) fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64, scale: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}[{i}]: {x} vs {y} (tolerance {tol} × {scale})"
        );
    }
}
