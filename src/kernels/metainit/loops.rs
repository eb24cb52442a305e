//! The step's products as hand-written loops, laid out for the memory: rows read
//! end to end with the next rows prefetched, the transposed product over blocks of
//! rows that stay in L1, column tiles for a wide input; a wide product split in
//! two halves over rayon's threads. Where a product is wide enough for MKL
//! ([`through_mkl`]), these call it instead.

use super::gemm::through_mkl;
#[cfg(target_arch = "x86_64")]
use super::simd::outer_row_avx2;
use super::{LANES, Lane, ZERO};
use crate::kernels::blas::{Op, gemm, gemm_strided};
use crate::kernels::simd::{Kernel, Simd, dispatch};

/// Input columns per tile of the wide products (128 lane groups, 16 KB).
const TILE: usize = 128;
/// Inputs up to this many columns are not tiled: their lanes stay in L1 whole
/// (256 lane groups, 32 KB), and a row read end to end streams best from memory.
const UNTILED: usize = 256;
/// Floats per cache line.
const LINE: usize = 16;
/// Matrices of at least this many floats (beyond L1) are prefetched ahead of use;
/// a narrow network's stay in cache.
const PREFETCH_MIN: usize = 8192;

/// Asks for the cache line holding `p` ahead of its use (a hint: never faults).
#[inline(always)]
fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and cannot fault, whatever
    // the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Products with at least this many rows and this many weights are split in two
/// halves by `rayon::join` (disjoint outputs, so results are unchanged): when the
/// pool has an idle thread (5 members on 2 threads leave one idle for the last
/// member), it takes a half; otherwise the caller runs both.
const SPLIT_ROWS: usize = 64;
const SPLIT_MIN: usize = 16384;

/// Whether a product of `rows` outputs over `cols` inputs is split.
#[inline(always)]
pub(super) fn split(rows: usize, cols: usize) -> bool {
    rows >= SPLIT_ROWS && rows * cols >= SPLIT_MIN
}

/// An even index near the middle of `n`.
#[inline(always)]
pub(super) fn middle(n: usize) -> usize {
    (n / 2) & !1
}

/// How a product meets its output: `Set` overwrites it (the first lane group's
/// product, so that the output need not be zeroed before; MKL writes with β = 0
/// for the same reason), `Add` adds to it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Write {
    Set,
    Add,
}

impl Write {
    /// `Set` for lane group 0, which a sum over the groups starts with; else `Add`.
    #[inline(always)]
    pub(super) fn for_group(j: usize) -> Write {
        if j == 0 { Write::Set } else { Write::Add }
    }

    /// GEMM's β: 0 to overwrite, 1 to add.
    #[inline(always)]
    pub(super) fn beta(self) -> f32 {
        match self {
            Write::Set => 0.0,
            Write::Add => 1.0,
        }
    }
}

// The halves of a split product run in closures on rayon's threads, and a closure
// is compiled without its caller's target features: so each half is a `Kernel`
// of its own, entered again on the caller's instruction set by `dispatch`.

/// A half of [`mat_acc`]: its rows of W and of the output.
struct MatAccHalf<'a> {
    w: &'a [f32],
    x: &'a [Lane],
    out: &'a mut [Lane],
}

impl Kernel for MatAccHalf<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        mat_acc_whole::<S>(self.w, self.x, self.out);
    }
}

/// A half of [`mat_t_acc`]: the output columns `c0..c0 + out.len()` of W, whose
/// rows are `cols` long.
struct MatTHalf<'a> {
    w: &'a [f32],
    z: &'a [Lane],
    cols: usize,
    c0: usize,
    out: &'a mut [Lane],
}

impl Kernel for MatTHalf<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, _: S) {
        mat_t_cols::<S>(self.w, self.z, self.cols, self.c0, self.out);
    }
}

/// A half of [`outer_acc`]: its rows of g and a.
struct OuterHalf<'a> {
    g: &'a mut [f32],
    a: &'a [Lane],
    b: &'a [Lane],
    write: Write,
}

impl Kernel for OuterHalf<'_> {
    type Output = ();
    #[inline(always)]
    fn run<S: Simd>(self, simd: S) {
        outer_whole(simd, self.g, self.a, self.b, self.write);
    }
}

/// acc += w · x, lane by lane.
#[inline(always)]
fn madd_lanes<S: Simd>(w: f32, x: &Lane, acc: &mut Lane) {
    for k in 0..LANES {
        acc[k] = S::madd(w, x[k], acc[k]);
    }
}

/// acc0 += w0 · x and acc1 += w1 · x, lane by lane, the two chains interleaved.
#[inline(always)]
fn madd_pair<S: Simd>((w0, w1): (f32, f32), x: &Lane, (acc0, acc1): (&mut Lane, &mut Lane)) {
    for k in 0..LANES {
        acc0[k] = S::madd(w0, x[k], acc0[k]);
        acc1[k] = S::madd(w1, x[k], acc1[k]);
    }
}

/// out[r] += Σ_c w[r][c] · x[c], two rows at a time (eight independent FMA chains,
/// each input lane group loaded once per pair).
#[inline(always)]
pub(super) fn mat_acc<S: Simd>(simd: S, w: &[f32], x: &[Lane], out: &mut [Lane]) {
    let (rows, cols) = (out.len(), x.len());
    if split(rows, cols) {
        let half = middle(rows);
        let (o1, o2) = out.split_at_mut(half);
        let (w1, w2) = w.split_at(half * cols);
        rayon::join(
            || dispatch(simd.avx2(), MatAccHalf { w: w1, x, out: o1 }),
            || dispatch(simd.avx2(), MatAccHalf { w: w2, x, out: o2 }),
        );
    } else {
        mat_acc_whole::<S>(w, x, out);
    }
}

/// [`mat_acc`] on one thread.
#[inline(always)]
fn mat_acc_whole<S: Simd>(w: &[f32], x: &[Lane], out: &mut [Lane]) {
    let cols = x.len();
    if through_mkl(out.len(), cols) {
        // out[rows × lanes] += W[rows × cols] · x[cols × lanes]
        let rows = out.len();
        gemm(
            Op::Plain,
            w,
            Op::Plain,
            x.as_flattened(),
            out.as_flattened_mut(),
            rows,
            LANES,
            cols,
            1.0,
        );
        return;
    }
    // Column tiles keep a wide input (the first layer's 3,072 features are 384 KB
    // of lanes) in L1 across the rows.
    let tile = if cols <= UNTILED { cols.max(1) } else { TILE };
    for lo in (0..cols).step_by(tile) {
        let hi = (lo + tile).min(cols);
        mat_acc_tile::<S>(w, x, out, lo, hi);
    }
}

#[inline(always)]
fn mat_acc_tile<S: Simd>(w: &[f32], x: &[Lane], out: &mut [Lane], lo: usize, hi: usize) {
    let cols = x.len();
    let rows = out.len();
    let mut pairs = out.chunks_exact_mut(2);
    let mut r = 0;
    for pair in &mut pairs {
        // The next pair's part of W, fetched while this pair computes: W is read
        // once per product and, at width 200, comes from beyond L2.
        if w.len() >= PREFETCH_MIN && r + 4 <= rows {
            let next = w[(r + 2) * cols..(r + 4) * cols].as_ptr();
            for row in 0..2 {
                for c in (lo..hi).step_by(LINE) {
                    prefetch(next.wrapping_add(row * cols + c));
                }
            }
        }
        let (row0, row1) = (
            &w[r * cols..(r + 1) * cols],
            &w[(r + 1) * cols..(r + 2) * cols],
        );
        let (mut acc0, mut acc1) = (pair[0], pair[1]);
        for c in lo..hi {
            madd_pair::<S>((row0[c], row1[c]), &x[c], (&mut acc0, &mut acc1));
        }
        pair[0] = acc0;
        pair[1] = acc1;
        r += 2;
    }
    for o in pairs.into_remainder() {
        let row = &w[r * cols..(r + 1) * cols];
        let mut acc = *o;
        for c in lo..hi {
            madd_lanes::<S>(row[c], &x[c], &mut acc);
        }
        *o = acc;
    }
}

/// out[c] += Σ_r w[r][c] · z[r], two columns at a time, over blocks of rows: a
/// pair's column of W touches one cache line per row, and a block's lines and lanes
/// stay in L1 across the pairs (all 200 rows of a wide layer would not).
/// Split like [`mat_acc`], by output columns.
#[inline(always)]
pub(super) fn mat_t_acc<S: Simd>(simd: S, w: &[f32], z: &[Lane], out: &mut [Lane]) {
    let cols = out.len();
    if split(cols, z.len()) {
        let half = middle(cols);
        let (o1, o2) = out.split_at_mut(half);
        let columns = |c0, out| {
            dispatch(
                simd.avx2(),
                MatTHalf {
                    w,
                    z,
                    cols,
                    c0,
                    out,
                },
            )
        };
        rayon::join(|| columns(0, o1), || columns(half, o2));
    } else {
        mat_t_cols::<S>(w, z, cols, 0, out);
    }
}

/// [`mat_t_acc`] on one thread for the output columns `c0..c0 + out.len()` of W,
/// whose rows are `cols` long.
#[inline(always)]
fn mat_t_cols<S: Simd>(w: &[f32], z: &[Lane], cols: usize, c0: usize, out: &mut [Lane]) {
    if through_mkl(out.len(), z.len()) {
        // out[n × lanes] += W[:, c0..c0 + n]ᵀ · z[rows × lanes], W's rows `cols` long.
        let (n, rows) = (out.len(), z.len());
        gemm_strided(
            (Op::Trans, &w[c0..], cols),
            (Op::Plain, z.as_flattened(), LANES),
            (out.as_flattened_mut(), LANES),
            n,
            LANES,
            rows,
            1.0,
        );
        return;
    }
    const ROWS: usize = 64;
    for lo in (0..z.len()).step_by(ROWS) {
        let hi = (lo + ROWS).min(z.len());
        mat_t_block::<S>(w, &z[lo..hi], lo, cols, c0, out);
    }
}

/// [`mat_t_cols`] for the rows `first..first + z.len()`.
#[inline(always)]
fn mat_t_block<S: Simd>(
    w: &[f32],
    z: &[Lane],
    first: usize,
    cols: usize,
    c0: usize,
    out: &mut [Lane],
) {
    let mut pairs = out.chunks_exact_mut(2);
    let mut c = c0;
    for pair in &mut pairs {
        let (mut acc0, mut acc1) = (pair[0], pair[1]);
        // The first pair of each line's columns fetches the next line of every row.
        let ahead = w.len() >= PREFETCH_MIN && c.is_multiple_of(LINE) && c + LINE < cols;
        for (i, zv) in z.iter().enumerate() {
            let r = first + i;
            if ahead {
                prefetch(w[r * cols + c + LINE..].as_ptr());
            }
            let (w0, w1) = (w[r * cols + c], w[r * cols + c + 1]);
            madd_pair::<S>((w0, w1), zv, (&mut acc0, &mut acc1));
        }
        pair[0] = acc0;
        pair[1] = acc1;
        c += 2;
    }
    for o in pairs.into_remainder() {
        let mut acc = *o;
        for (i, zv) in z.iter().enumerate() {
            madd_lanes::<S>(w[(first + i) * cols + c], zv, &mut acc);
        }
        *o = acc;
    }
}

/// g[r][c] += Σ_samples a[r] · b[c], or g[r][c] = … under [`Write::Set`]; split
/// like [`mat_acc`], by rows.
#[inline(always)]
pub(super) fn outer_acc<S: Simd>(simd: S, g: &mut [f32], a: &[Lane], b: &[Lane], write: Write) {
    let (rows, cols) = (a.len(), b.len());
    if split(rows, cols) {
        let half = middle(rows);
        let (g1, g2) = g.split_at_mut(half * cols);
        let (a1, a2) = a.split_at(half);
        rayon::join(
            || {
                dispatch(
                    simd.avx2(),
                    OuterHalf {
                        g: g1,
                        a: a1,
                        b,
                        write,
                    },
                )
            },
            || {
                dispatch(
                    simd.avx2(),
                    OuterHalf {
                        g: g2,
                        a: a2,
                        b,
                        write,
                    },
                )
            },
        );
    } else {
        outer_whole(simd, g, a, b, write);
    }
}

/// [`outer_acc`] on one thread.
#[inline(always)]
fn outer_whole<S: Simd>(simd: S, g: &mut [f32], a: &[Lane], b: &[Lane], write: Write) {
    let cols = b.len();
    if through_mkl(a.len(), cols) {
        // g[rows × cols] += a[rows × lanes] · b[cols × lanes]ᵀ
        let rows = a.len();
        gemm(
            Op::Plain,
            a.as_flattened(),
            Op::Trans,
            b.as_flattened(),
            g,
            rows,
            cols,
            LANES,
            write.beta(),
        );
        return;
    }
    if write == Write::Set {
        g.fill(0.0);
    }
    for lo in (0..cols).step_by(TILE) {
        let hi = (lo + TILE).min(cols);
        for (r, av) in a.iter().enumerate() {
            outer_row(simd, &mut g[r * cols + lo..r * cols + hi], av, &b[lo..hi]);
        }
    }
}

/// One row of [`outer_acc`].
#[inline(always)]
fn outer_row<S: Simd>(simd: S, row: &mut [f32], av: &Lane, b: &[Lane]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = simd.avx2() {
        outer_row_avx2(avx2, row, av, b);
        return;
    }
    for (gv, bv) in row.iter_mut().zip(b) {
        let mut part = [0f32; 8];
        for k in 0..LANES {
            part[k % 8] = S::madd(av[k], bv[k], part[k % 8]);
        }
        *gv += hsum8(&part);
    }
}

#[inline(always)]
pub(super) fn hsum8(p: &[f32; 8]) -> f32 {
    ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]))
}

/// gb[r] += Σ_samples a[r]
#[inline(always)]
pub(super) fn rowsum_acc(gb: &mut [f32], a: &[Lane]) {
    for (g, av) in gb.iter_mut().zip(a) {
        *g += av.iter().sum::<f32>();
    }
}

#[inline(always)]
pub(super) fn bias_lanes(b: &[f32]) -> Vec<Lane> {
    b.iter().map(|&v| [v; LANES]).collect()
}

/// a ← a + b, lane by lane.
#[inline(always)]
pub(super) fn add_lanes(a: &mut [Lane], b: &[Lane]) {
    for (av, bv) in a.iter_mut().zip(b) {
        for k in 0..LANES {
            av[k] += bv[k];
        }
    }
}

#[inline(always)]
pub(super) fn masked(d: &[Lane], v: &mut [Lane]) {
    for (dv, x) in d.iter().zip(v.iter_mut()) {
        for k in 0..LANES {
            x[k] *= dv[k];
        }
    }
}

/// Σ over units and lanes of a ⊙ b, in f64.
#[inline(always)]
pub(super) fn lane_dot(a: &[Lane], b: &[Lane]) -> f64 {
    let mut acc = ZERO;
    for (av, bv) in a.iter().zip(b) {
        for k in 0..LANES {
            acc[k] += av[k] * bv[k];
        }
    }
    acc.iter().map(|&v| v as f64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::{Scalar, avx2_for_test};
    use crate::kernels::{assert_close, test_values};

    #[test]
    fn the_avx2_outer_row_agrees_with_the_scalar_one() {
        let Some(avx2) = avx2_for_test() else { return };
        // 8 · 4 + 3 columns: blocks of eight and a tail.
        let cols = 35;
        let a: Lane = test_values(LANES, 1, 1.0).try_into().expect("a lane");
        let b: Vec<Lane> = test_values(cols * LANES, 2, 1.0)
            .chunks_exact(LANES)
            .map(|c| c.try_into().expect("a lane"))
            .collect();
        let start = test_values(cols, 3, 1.0);
        let (mut scalar, mut simd) = (start.clone(), start);
        outer_row(Scalar, &mut scalar, &a, &b);
        outer_row(avx2, &mut simd, &a, &b);
        let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        // Sums of 32 products below 1 in size, added in other orders (and FMA's
        // single rounding): a few units of 2⁻²⁴ times 32.
        assert_close("row", &wide(&simd), &wide(&scalar), 1e-5, 32.0);
    }
}
