//! The step's products through MKL's single-threaded GEMM, where libtorch
//! carries it and a product has 64 or more rows and columns (width 200, not the
//! paper's width 10): two products of one matrix as one GEMM of 64 columns, an
//! outer-product pair as one GEMM over 64 samples, and products with the
//! gradient's weights through the batch's Gram matrices.

use super::loops::{Write, mat_acc, mat_t_acc, middle, outer_acc, split};
use super::step::Group;
use super::{LANES, Lane};
use crate::kernels::blas::{self, Op, gemm, gemm_strided};
use crate::kernels::simd::Simd;

/// Products with at least this many rows and columns go through MKL's GEMM where
/// libtorch carries it (one thread per call): a wide network's products run at
/// MKL's rate, a narrow one keeps the loops below (its results unchanged).
const MKL_MIN: usize = 64;

/// Whether a product of `rows` outputs over `cols` inputs goes through MKL.
#[inline(always)]
pub(super) fn through_mkl(rows: usize, cols: usize) -> bool {
    rows >= MKL_MIN && cols >= MKL_MIN && blas::available()
}

/// Whether products with the gradient's weights go through the batch's Gram
/// matrices: g_l = Σ_samples e_l ⊗ h_l has rank at most `batch`, so g_l·x =
/// E_l (H_lᵀ x) costs batch·(rows + cols) multiply-adds per sample against rows·cols
/// (a width-200 layer at MetaInit's 32 samples: a third). Through MKL only, so that
/// narrow networks (width 10: Fig. 2) keep their numbers.
#[inline(always)]
pub(super) fn through_gram(rows: usize, cols: usize, batch: usize) -> bool {
    batch * (rows + cols) < rows * cols && blas::available()
}

/// Two lane arrays of one length side by side, `[n][2 · LANES]`: the operand of one
/// product of 64 columns in place of two of 32.
fn interleave(a: &[Lane], b: &[Lane]) -> Vec<f32> {
    debug_assert_eq!(a.len(), b.len());
    let mut out = Vec::with_capacity(2 * LANES * a.len());
    for (av, bv) in a.iter().zip(b) {
        out.extend_from_slice(av);
        out.extend_from_slice(bv);
    }
    out
}

/// The inverse of [`interleave`], added: a += left halves, b += right halves.
fn deinterleave_add(both: &[f32], a: &mut [Lane], b: &mut [Lane]) {
    for ((row, av), bv) in both.chunks_exact(2 * LANES).zip(a).zip(b) {
        for k in 0..LANES {
            av[k] += row[k];
            bv[k] += row[LANES + k];
        }
    }
}

/// out1 += W·x1 and out2 += W·x2: where MKL takes the product, one GEMM of 64 columns
/// (W read once, and MKL runs wider products faster per FLOP); else two [`mat_acc`].
#[inline(always)]
pub(super) fn mat_acc_pair<S: Simd>(
    simd: S,
    w: &[f32],
    (x1, x2): (&[Lane], &[Lane]),
    out1: &mut [Lane],
    out2: &mut [Lane],
) {
    let (rows, cols) = (out1.len(), x1.len());
    if !through_mkl(rows, cols) {
        mat_acc(simd, w, x1, out1);
        mat_acc(simd, w, x2, out2);
        return;
    }
    // prod[r0..r0 + n] = W[r0..r0 + n] · xs
    let part = |xs: &[f32], r0: usize, prod: &mut [f32]| {
        let n = prod.len() / PAIR;
        let w = &w[r0 * cols..(r0 + n) * cols];
        gemm(Op::Plain, w, Op::Plain, xs, prod, n, PAIR, cols, 0.0);
    };
    paired_product((x1, x2), (out1, out2), part);
}

/// out1 += Wᵀ·z1 and out2 += Wᵀ·z2, as [`mat_acc_pair`] does for W.
#[inline(always)]
pub(super) fn mat_t_acc_pair<S: Simd>(
    simd: S,
    w: &[f32],
    (z1, z2): (&[Lane], &[Lane]),
    out1: &mut [Lane],
    out2: &mut [Lane],
) {
    let (cols, rows) = (out1.len(), z1.len());
    if !through_mkl(cols, rows) {
        mat_t_acc(simd, w, z1, out1);
        mat_t_acc(simd, w, z2, out2);
        return;
    }
    // prod[c0..c0 + n] = W[:, c0..c0 + n]ᵀ · zs, W's rows `cols` long.
    let part = |zs: &[f32], c0: usize, prod: &mut [f32]| {
        let n = prod.len() / PAIR;
        let (w, z) = ((Op::Trans, &w[c0..], cols), (Op::Plain, zs, PAIR));
        gemm_strided(w, z, (prod, PAIR), n, PAIR, rows, 0.0);
    };
    paired_product((z1, z2), (out1, out2), part);
}

/// Columns of a paired product: two lane groups side by side.
const PAIR: usize = 2 * LANES;

/// The two products of one matrix that [`mat_acc_pair`] and [`mat_t_acc_pair`] take
/// as one: `part(xs, first, prod)` writes the output rows `first..` that `prod`
/// holds, `[n][PAIR]`, from the interleaved operand `xs`; the rows are split in two
/// halves by `rayon::join` where the product is large ([`split`]); out1 and out2
/// get the two column halves.
fn paired_product(
    (x1, x2): (&[Lane], &[Lane]),
    (out1, out2): (&mut [Lane], &mut [Lane]),
    part: impl Fn(&[f32], usize, &mut [f32]) + Sync,
) {
    let xs = interleave(x1, x2);
    let n = out1.len();
    let mut prod = vec![0f32; n * PAIR];
    if split(n, x1.len()) {
        let half = middle(n);
        let (p1, p2) = prod.split_at_mut(half * PAIR);
        rayon::join(|| part(&xs, 0, p1), || part(&xs, half, p2));
    } else {
        part(&xs, 0, &mut prod);
    }
    deinterleave_add(&prod, out1, out2);
}

/// g += a1 ⊗ b1 + a2 ⊗ b2 (sums over the samples; g = … under [`Write::Set`], as
/// for [`outer_acc`]): where MKL takes it, one GEMM over 64 samples, so that g is read
/// and written once instead of twice.
#[inline(always)]
pub(super) fn outer_acc_pair<S: Simd>(
    simd: S,
    g: &mut [f32],
    (a1, b1): (&[Lane], &[Lane]),
    (a2, b2): (&[Lane], &[Lane]),
    write: Write,
) {
    let (rows, cols) = (a1.len(), b1.len());
    if !through_mkl(rows, cols) {
        outer_acc(simd, g, a1, b1, write);
        outer_acc(simd, g, a2, b2, Write::Add);
        return;
    }
    let beta = write.beta();
    let (a, b) = (interleave(a1, a2), interleave(b1, b2));
    // g[rows × cols] += a[rows × 64] · b[cols × 64]ᵀ
    let whole = |a: &[f32], g: &mut [f32], rows: usize| {
        gemm(Op::Plain, a, Op::Trans, &b, g, rows, cols, PAIR, beta);
    };
    if split(rows, cols) {
        let half = middle(rows);
        let (g1, g2) = g.split_at_mut(half * cols);
        let (h1, h2) = a.split_at(half * PAIR);
        rayon::join(|| whole(h1, g1, half), || whole(h2, g2, rows - half));
    } else {
        whole(&a, g, rows);
    }
}

/// out += g_l·x with g_l = Σ over the groups of e_l ⊗ h_l (the batch's gradient of
/// layer l's weights), through the Gram matrices H_lᵀ x of each group
/// ([`through_gram`]).
pub(super) fn gram_acc(groups: &[Group], l: usize, x: &[Lane], out: &mut [Lane]) {
    low_rank_acc(
        groups.iter().map(|gr| (gr.e[l].as_slice(), gr.input(l))),
        x,
        out,
    );
}

/// out += g_lᵀ·z, as [`gram_acc`] does for g_l: the same factors, swapped.
pub(super) fn gram_t_acc(groups: &[Group], l: usize, z: &[Lane], out: &mut [Lane]) {
    low_rank_acc(
        groups.iter().map(|gr| (gr.input(l), gr.e[l].as_slice())),
        z,
        out,
    );
}

/// out += Σ_(a, b) a · (bᵀ x): the product with Σ a ⊗ b, each term through its
/// `[LANES × LANES]` Gram matrix bᵀ x.
fn low_rank_acc<'a>(
    factors: impl Iterator<Item = (&'a [Lane], &'a [Lane])>,
    x: &[Lane],
    out: &mut [Lane],
) {
    let mut gram = [0f32; LANES * LANES];
    for (a, b) in factors {
        // gram[s][k] = Σ_c b[c][s] · x[c][k]
        let (b, x) = (b.as_flattened(), x.as_flattened());
        gemm(
            Op::Trans,
            b,
            Op::Plain,
            x,
            &mut gram,
            LANES,
            LANES,
            x.len() / LANES,
            0.0,
        );
        // out[r][k] += Σ_s a[r][s] · gram[s][k]
        let (a, rows) = (a.as_flattened(), out.len());
        gemm(
            Op::Plain,
            a,
            Op::Plain,
            &gram,
            out.as_flattened_mut(),
            rows,
            LANES,
            LANES,
            1.0,
        );
    }
}
