//! The step's two loops written in AVX2 intrinsics (the compiler left one
//! scalar and vectorised the other across columns, with gathers). Each takes the
//! [`Avx2Fma`] token, so only a CPU that has AVX2 and FMA reaches it.

#![cfg(target_arch = "x86_64")]

use super::{LANES, Lane};
use crate::kernels::simd::Avx2Fma;
use std::arch::x86_64::*;

/// One row of an outer product (`loops::outer_row`) with AVX2 intrinsics: eight
/// columns at a time, so that the sums over the lanes are eight independent FMA
/// chains, reduced to one vector of eight sums by a tree of horizontal adds.
/// (Left to itself, the compiler vectorised this loop across columns, with
/// gathers.)
#[inline(always)]
pub(super) fn outer_row_avx2(avx2: Avx2Fma, row: &mut [f32], av: &Lane, b: &[Lane]) {
    let _proof = avx2;
    // SAFETY: the token exists, so this CPU has AVX2 and FMA.
    unsafe { outer_row_intrinsics(row, av, b) }
}

#[target_feature(enable = "avx2,fma")]
fn outer_row_intrinsics(row: &mut [f32], av: &Lane, b: &[Lane]) {
    const _: () = assert!(LANES == 32);
    // SAFETY (whole body): every load and store stays within `av`, `b[..]` (32 floats
    // each) and `row[c..c + 8]` with c + 8 <= row.len().
    unsafe {
        let a = [0, 8, 16, 24].map(|q| _mm256_loadu_ps(av.as_ptr().add(q)));
        let dot = |bv: &Lane| {
            let p = bv.as_ptr();
            let mut acc = _mm256_mul_ps(a[0], _mm256_loadu_ps(p));
            acc = _mm256_fmadd_ps(a[1], _mm256_loadu_ps(p.add(8)), acc);
            acc = _mm256_fmadd_ps(a[2], _mm256_loadu_ps(p.add(16)), acc);
            _mm256_fmadd_ps(a[3], _mm256_loadu_ps(p.add(24)), acc)
        };
        let n = row.len().min(b.len());
        let mut c = 0;
        while c + 8 <= n {
            let s: [__m256; 8] = std::array::from_fn(|j| dot(&b[c + j]));
            let t0 = _mm256_hadd_ps(s[0], s[1]);
            let t1 = _mm256_hadd_ps(s[2], s[3]);
            let t2 = _mm256_hadd_ps(s[4], s[5]);
            let t3 = _mm256_hadd_ps(s[6], s[7]);
            let u0 = _mm256_hadd_ps(t0, t1); // lanes 0-3: sums 0-3 (low halves); 4-7: high halves
            let u1 = _mm256_hadd_ps(t2, t3);
            let sums = _mm256_add_ps(
                _mm256_permute2f128_ps(u0, u1, 0x20),
                _mm256_permute2f128_ps(u0, u1, 0x31),
            );
            let out = row.as_mut_ptr().add(c);
            _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), sums));
            c += 8;
        }
        while c < n {
            let v = dot(&b[c]);
            let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
            row[c] += _mm_cvtss_f32(h);
            c += 1;
        }
    }
}

/// The first `blocks` entries (a multiple of eight) of the quotient's adjoints
/// (`step::quotient_adjoints`), eight lanes at a time, adding lane m's |q| to
/// `sums[m]`: the scalar loop's operations in its order, so the same numbers.
///
/// # Panics
/// Where `blocks` is not a multiple of eight or a slice is shorter.
#[inline(always)]
pub(super) fn quotient_blocks_avx2(
    avx2: Avx2Fma,
    (gv, hv): (&[f32], &[f32]),
    (gb, hb): (&mut [f32], &mut [f32]),
    (eps, inv): (f32, f32),
    blocks: usize,
    sums: &mut [f64; 8],
) {
    let _proof = avx2;
    // SAFETY: the token exists, so this CPU has AVX2 and FMA.
    unsafe { quotient_blocks_intrinsics((gv, hv), (gb, hb), (eps, inv), blocks, sums) }
}

#[target_feature(enable = "avx2,fma")]
fn quotient_blocks_intrinsics(
    (gv, hv): (&[f32], &[f32]),
    (gb, hb): (&mut [f32], &mut [f32]),
    (eps, inv): (f32, f32),
    blocks: usize,
    sums: &mut [f64; 8],
) {
    assert!(
        blocks.is_multiple_of(8)
            && [gv.len(), hv.len(), gb.len(), hb.len()]
                .iter()
                .all(|&n| n >= blocks),
        "quotient blocks beyond the slices"
    );
    let (one, minus, zero) = (
        _mm256_set1_ps(1.0),
        _mm256_set1_ps(-1.0),
        _mm256_setzero_ps(),
    );
    let (epsv, invv) = (_mm256_set1_ps(eps), _mm256_set1_ps(inv));
    let sign = _mm256_set1_ps(-0.0);
    // SAFETY (all loads and stores): i + 8 ≤ blocks ≤ each slice's length (asserted).
    let (mut lo, mut hi) = unsafe {
        (
            _mm256_loadu_pd(sums.as_ptr()),
            _mm256_loadu_pd(sums.as_ptr().add(4)),
        )
    };
    for i in (0..blocks).step_by(8) {
        // SAFETY: as above.
        let (g, h) = unsafe {
            (
                _mm256_loadu_ps(gv.as_ptr().add(i)),
                _mm256_loadu_ps(hv.as_ptr().add(i)),
            )
        };
        // s = g ≥ 0 ? 1 : −1
        let s = _mm256_blendv_ps(minus, one, _mm256_cmp_ps::<_CMP_GE_OQ>(g, zero));
        let es = _mm256_mul_ps(epsv, s);
        let r = _mm256_div_ps(one, _mm256_add_ps(g, es));
        let q = _mm256_sub_ps(_mm256_mul_ps(_mm256_sub_ps(g, h), r), one);
        // sq = q > 0 ? 1 : q < 0 ? −1 : 0
        let sq = _mm256_blendv_ps(
            _mm256_and_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(q, zero), minus),
            one,
            _mm256_cmp_ps::<_CMP_GT_OQ>(q, zero),
        );
        let a = _mm256_mul_ps(
            _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(sq, _mm256_add_ps(es, h)), r), r),
            invv,
        );
        let b = _mm256_mul_ps(_mm256_mul_ps(_mm256_xor_ps(sq, sign), r), invv);
        // SAFETY: as above.
        unsafe {
            _mm256_storeu_ps(gb.as_mut_ptr().add(i), a);
            _mm256_storeu_ps(hb.as_mut_ptr().add(i), b);
        }
        let qa = _mm256_andnot_ps(sign, q);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(qa)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(qa)));
    }
    // SAFETY: `sums` holds eight f64, four per store.
    unsafe {
        _mm256_storeu_pd(sums.as_mut_ptr(), lo);
        _mm256_storeu_pd(sums.as_mut_ptr().add(4), hi);
    }
}
