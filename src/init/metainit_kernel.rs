//! MetaInit's step written out by hand for one member of a (leaky-)ReLU MLP, so
//! that narrow networks do not pay libtorch's per-op cost on a third-order graph of
//! thousands of tiny batched products, and wide ones (up to 256 units) read each
//! weight matrix from memory in the order the hardware prefetches best.
//!
//! The network is piecewise linear (φ'' = 0 almost everywhere), so with the masks
//! D_l = φ'(z_l) fixed, only the softmax at the top is non-linear. With L the mean
//! cross-entropy of a batch, g = ∇L, H its Hessian and Hg the Hessian-vector product
//! (Pearlmutter's R-operator), the quotient GQ(g, Hg) has the adjoints
//! Ḡ = ∂GQ/∂g and H̄ = ∂GQ/∂(Hg), and since Hg depends on θ both through H and g,
//!
//!   ∇_θ GQ = H (Ḡ + H H̄) + ∇_θ (H̄ᵀ H(θ) g)|_{H̄, g fixed}.
//!
//! The first term is two Hessian-vector products; the second is the reverse pass of
//! a forward pass in hyper-dual numbers along H̄ and g (value, two first-order and
//! one mixed second-order part), whose mixed part at the loss is H̄ᵀ H g. MetaInit
//! needs only ⟨∂GQ/∂W_l, W_l⟩ per weight matrix, which this module returns.
//!
//! Activations are `[unit][sample]` with the batch in lanes of [`LANES`] samples;
//! the batch must be a multiple of it (the caller falls back to libtorch otherwise).

use crate::blas::{Op, gemm, gemm_strided};

/// Samples per lane group: one group is four AVX registers, four independent FMA chains.
pub const LANES: usize = 32;
type Lane = [f32; LANES];
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

const ZERO: Lane = [0.0; LANES];

/// One member: per layer l, W_l `[dims[l+1]][dims[l]]` row-major and b_l `[dims[l+1]]`.
pub struct Member<'a> {
    pub dims: &'a [usize],
    pub w: Vec<&'a [f32]>,
    pub b: Vec<&'a [f32]>,
    pub slope: f32,
}

/// A vector in parameter space: per layer a matrix and a bias. Its matrices come
/// from, and go back to, this thread's [`POOL`].
struct ParamVec {
    w: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
}

impl ParamVec {
    /// A vector whose matrices hold whatever their buffers held (zeros where fresh):
    /// for one that is written whole before it is read (by [`quotient_adjoints`],
    /// or by its first lane group's outer products).
    fn scratch(dims: &[usize]) -> ParamVec {
        ParamVec {
            w: (0..dims.len() - 1)
                .map(|l| pooled(dims[l + 1] * dims[l]))
                .collect(),
            b: (0..dims.len() - 1)
                .map(|l| vec![0.0; dims[l + 1]])
                .collect(),
        }
    }
}

impl Drop for ParamVec {
    fn drop(&mut self) {
        POOL.with_borrow_mut(|pool| {
            for w in self.w.drain(..) {
                if w.len() >= POOL_MIN && pool.held + w.len() <= POOL_MAX {
                    pool.held += w.len();
                    pool.free.entry(w.len()).or_default().push(w);
                }
            }
        });
    }
}

/// Matrices of at least this many floats are kept for reuse when a [`ParamVec`]
/// is dropped. A step makes and drops about five vectors the size of the network;
/// fresh from the allocator, a wide first layer's matrix (2.4 MB at 3,072 × 200)
/// would come straight from the OS each time, and zeroing its pages would cost a
/// large share of a step.
const POOL_MIN: usize = 4096;
/// At most this many floats (1 GB) are held per thread.
const POOL_MAX: usize = 1 << 28;

/// Weight-sized buffers kept for reuse on one thread, by length.
#[derive(Default)]
struct Pool {
    free: std::collections::HashMap<usize, Vec<Vec<f32>>>,
    held: usize,
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> = std::cell::RefCell::new(Pool::default());
}

/// `n` floats in a buffer from this thread's pool when it holds one of that length
/// (holding what it held), else fresh zeros.
fn pooled(n: usize) -> Vec<f32> {
    let reused = POOL.with_borrow_mut(|pool| {
        let v = pool.free.get_mut(&n)?.pop()?;
        pool.held -= n;
        Some(v)
    });
    reused.unwrap_or_else(|| vec![0.0; n])
}

/// Frees the buffers that this thread and every thread of the current rayon pool
/// keep for [`ParamVec`]s: called when a MetaInit run ends, so that they do not
/// outlive it. The pool's threads free theirs when they next look for work (a
/// thread busy elsewhere is not waited for); a buffer in use is never in a pool.
pub fn release_buffers() {
    fn clear() {
        POOL.with_borrow_mut(|pool| *pool = Pool::default());
    }
    rayon::spawn_broadcast(|_| clear());
    clear();
}

/// Products with at least this many rows and this many weights are split in two
/// halves by `rayon::join` (disjoint outputs, so results are unchanged): when the
/// pool has an idle thread (5 members on 2 threads leave one idle for the last
/// member), it takes a half; otherwise the caller runs both.
const SPLIT_ROWS: usize = 64;
const SPLIT_MIN: usize = 16384;

/// Whether a product of `rows` outputs over `cols` inputs is split.
#[inline(always)]
fn split(rows: usize, cols: usize) -> bool {
    rows >= SPLIT_ROWS && rows * cols >= SPLIT_MIN
}

/// Products with at least this many rows and columns go through MKL's GEMM where
/// libtorch carries it (one thread per call): a wide network's products run at
/// MKL's rate, a narrow one keeps the loops below (its results unchanged).
const MKL_MIN: usize = 64;

/// Whether a product of `rows` outputs over `cols` inputs goes through MKL.
#[inline(always)]
fn through_mkl(rows: usize, cols: usize) -> bool {
    rows >= MKL_MIN && cols >= MKL_MIN && crate::blas::available()
}

/// Whether products with the gradient's weights go through the batch's Gram
/// matrices: g_l = Σ_samples e_l ⊗ h_l has rank at most `batch`, so g_l·x =
/// E_l (H_lᵀ x) costs batch·(rows + cols) multiply-adds per sample against rows·cols
/// (a width-200 layer at MetaInit's 32 samples: a third). Through MKL only, so that
/// narrow networks (width 10: Fig. 2) keep their numbers.
#[inline(always)]
fn through_gram(rows: usize, cols: usize, batch: usize) -> bool {
    batch * (rows + cols) < rows * cols && crate::blas::available()
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
fn mat_acc_pair<const FMA: bool>(
    w: &[f32],
    (x1, x2): (&[Lane], &[Lane]),
    out1: &mut [Lane],
    out2: &mut [Lane],
) {
    let (rows, cols) = (out1.len(), x1.len());
    if !through_mkl(rows, cols) {
        mat_acc::<FMA>(w, x1, out1);
        mat_acc::<FMA>(w, x2, out2);
        return;
    }
    // prod[r0..r0 + n] = W[r0..r0 + n] · xs
    let part = |xs: &[f32], r0: usize, prod: &mut [f32]| {
        let n = prod.len() / PAIR;
        let w = &w[r0 * cols..(r0 + n) * cols];
        gemm(Op::Plain, w, Op::Plain, xs, prod, n, PAIR, cols, 0.0);
    };
    paired_product((x1, x2), (out1, out2), split(rows, cols), part);
}

/// out1 += Wᵀ·z1 and out2 += Wᵀ·z2, as [`mat_acc_pair`] does for W.
#[inline(always)]
fn mat_t_acc_pair<const FMA: bool>(
    w: &[f32],
    (z1, z2): (&[Lane], &[Lane]),
    out1: &mut [Lane],
    out2: &mut [Lane],
) {
    let (cols, rows) = (out1.len(), z1.len());
    if !through_mkl(cols, rows) {
        mat_t_acc::<FMA>(w, z1, out1);
        mat_t_acc::<FMA>(w, z2, out2);
        return;
    }
    // prod[c0..c0 + n] = W[:, c0..c0 + n]ᵀ · zs, W's rows `cols` long.
    let part = |zs: &[f32], c0: usize, prod: &mut [f32]| {
        let n = prod.len() / PAIR;
        let (w, z) = ((Op::Trans, &w[c0..], cols), (Op::Plain, zs, PAIR));
        gemm_strided(w, z, (prod, PAIR), n, PAIR, rows, 0.0);
    };
    paired_product((z1, z2), (out1, out2), split(cols, rows), part);
}

/// Columns of a paired product: two lane groups side by side.
const PAIR: usize = 2 * LANES;

/// The two products of one matrix that [`mat_acc_pair`] and [`mat_t_acc_pair`] take
/// as one: `part(xs, first, prod)` writes the output rows `first..` that `prod`
/// holds, `[n][PAIR]`, from the interleaved operand `xs`; the rows are split in two
/// halves by `rayon::join` where `halves`; out1 and out2 get the two column halves.
fn paired_product(
    (x1, x2): (&[Lane], &[Lane]),
    (out1, out2): (&mut [Lane], &mut [Lane]),
    halves: bool,
    part: impl Fn(&[f32], usize, &mut [f32]) + Sync,
) {
    let xs = interleave(x1, x2);
    let n = out1.len();
    let mut prod = vec![0f32; n * PAIR];
    if halves {
        let half = middle(n);
        let (p1, p2) = prod.split_at_mut(half * PAIR);
        rayon::join(|| part(&xs, 0, p1), || part(&xs, half, p2));
    } else {
        part(&xs, 0, &mut prod);
    }
    deinterleave_add(&prod, out1, out2);
}

/// g += a1 ⊗ b1 + a2 ⊗ b2 (sums over the samples; g = … where `first`, as for
/// [`outer_acc`]): where MKL takes it, one GEMM over 64 samples, so that g is read
/// and written once instead of twice.
#[inline(always)]
fn outer_acc_pair<const FMA: bool>(
    g: &mut [f32],
    (a1, b1): (&[Lane], &[Lane]),
    (a2, b2): (&[Lane], &[Lane]),
    first: bool,
) {
    let (rows, cols) = (a1.len(), b1.len());
    if !through_mkl(rows, cols) {
        outer_acc::<FMA>(g, a1, b1, first);
        outer_acc::<FMA>(g, a2, b2, false);
        return;
    }
    let beta = if first { 0.0 } else { 1.0 };
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
fn gram_acc(groups: &[Group], l: usize, x: &[Lane], out: &mut [Lane]) {
    low_rank_acc(
        groups.iter().map(|gr| (gr.e[l].as_slice(), gr.input(l))),
        x,
        out,
    );
}

/// out += g_lᵀ·z, as [`gram_acc`] does for g_l: the same factors, swapped.
fn gram_t_acc(groups: &[Group], l: usize, z: &[Lane], out: &mut [Lane]) {
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

/// An even index near the middle of `n`.
#[inline(always)]
fn middle(n: usize) -> usize {
    (n / 2) & !1
}

/// Defines `$part`, one half of a split product: it runs `$whole` in a closure, and
/// closures are compiled without their caller's target features, so the AVX2 + FMA
/// instance is called through `$avx2`, a function of its own that has them.
macro_rules! split_half {
    ($part:ident, $avx2:ident, $whole:ident, ($($arg:ident: $ty:ty),*)) => {
        fn $part<const FMA: bool>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if FMA {
                // SAFETY: FMA = true only inside `step_avx2`, which runs on AVX2 + FMA
                // CPUs.
                unsafe { $avx2($($arg),*) };
                return;
            }
            $whole::<false>($($arg),*);
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2($($arg: $ty),*) {
            $whole::<true>($($arg),*);
        }
    };
}

split_half!(mat_acc_part, mat_acc_avx2, mat_acc_whole, (w: &[f32], x: &[Lane], out: &mut [Lane]));
split_half!(
    mat_t_part,
    mat_t_avx2,
    mat_t_cols,
    (w: &[f32], z: &[Lane], cols: usize, c0: usize, out: &mut [Lane])
);
split_half!(
    outer_part,
    outer_avx2,
    outer_whole,
    (g: &mut [f32], a: &[Lane], b: &[Lane], first: bool)
);

/// out[r] += Σ_c w[r][c] · x[c], two rows at a time (eight independent FMA chains,
/// each input lane group loaded once per pair).
#[inline(always)]
fn mat_acc<const FMA: bool>(w: &[f32], x: &[Lane], out: &mut [Lane]) {
    let (rows, cols) = (out.len(), x.len());
    if split(rows, cols) {
        let half = middle(rows);
        let (o1, o2) = out.split_at_mut(half);
        let (w1, w2) = w.split_at(half * cols);
        rayon::join(
            || mat_acc_part::<FMA>(w1, x, o1),
            || mat_acc_part::<FMA>(w2, x, o2),
        );
    } else {
        mat_acc_whole::<FMA>(w, x, out);
    }
}

/// [`mat_acc`] on one thread.
#[inline(always)]
fn mat_acc_whole<const FMA: bool>(w: &[f32], x: &[Lane], out: &mut [Lane]) {
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
        mat_acc_tile::<FMA>(w, x, out, lo, hi);
    }
}

#[inline(always)]
fn mat_acc_tile<const FMA: bool>(w: &[f32], x: &[Lane], out: &mut [Lane], lo: usize, hi: usize) {
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
            let (w0, w1, xv) = (row0[c], row1[c], &x[c]);
            for k in 0..LANES {
                acc0[k] = madd::<FMA>(w0, xv[k], acc0[k]);
                acc1[k] = madd::<FMA>(w1, xv[k], acc1[k]);
            }
        }
        pair[0] = acc0;
        pair[1] = acc1;
        r += 2;
    }
    for o in pairs.into_remainder() {
        let row = &w[r * cols..(r + 1) * cols];
        let mut acc = *o;
        for c in lo..hi {
            let (wv, xv) = (row[c], &x[c]);
            for k in 0..LANES {
                acc[k] = madd::<FMA>(wv, xv[k], acc[k]);
            }
        }
        *o = acc;
    }
}

/// out[c] += Σ_r w[r][c] · z[r], two columns at a time, over blocks of rows: a
/// pair's column of W touches one cache line per row, and a block's lines and lanes
/// stay in L1 across the pairs (all 200 rows of a wide layer would not).
/// Split like [`mat_acc`], by output columns.
#[inline(always)]
fn mat_t_acc<const FMA: bool>(w: &[f32], z: &[Lane], out: &mut [Lane]) {
    let cols = out.len();
    if split(cols, z.len()) {
        let half = middle(cols);
        let (o1, o2) = out.split_at_mut(half);
        rayon::join(
            || mat_t_part::<FMA>(w, z, cols, 0, o1),
            || mat_t_part::<FMA>(w, z, cols, half, o2),
        );
    } else {
        mat_t_cols::<FMA>(w, z, cols, 0, out);
    }
}

/// [`mat_t_acc`] on one thread for the output columns `c0..c0 + out.len()` of W,
/// whose rows are `cols` long.
#[inline(always)]
fn mat_t_cols<const FMA: bool>(w: &[f32], z: &[Lane], cols: usize, c0: usize, out: &mut [Lane]) {
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
        mat_t_block::<FMA>(w, &z[lo..hi], lo, cols, c0, out);
    }
}

/// [`mat_t_cols`] for the rows `first..first + z.len()`.
#[inline(always)]
fn mat_t_block<const FMA: bool>(
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
            for k in 0..LANES {
                acc0[k] = madd::<FMA>(w0, zv[k], acc0[k]);
                acc1[k] = madd::<FMA>(w1, zv[k], acc1[k]);
            }
        }
        pair[0] = acc0;
        pair[1] = acc1;
        c += 2;
    }
    for o in pairs.into_remainder() {
        let mut acc = *o;
        for (i, zv) in z.iter().enumerate() {
            let wv = w[(first + i) * cols + c];
            for k in 0..LANES {
                acc[k] = madd::<FMA>(wv, zv[k], acc[k]);
            }
        }
        *o = acc;
    }
}

/// g[r][c] += Σ_samples a[r] · b[c], or g[r][c] = … where `first` (the first lane
/// group's product), so that g need not be zeroed before (MKL writes with β = 0
/// for the same reason); split like
/// [`mat_acc`], by rows.
#[inline(always)]
fn outer_acc<const FMA: bool>(g: &mut [f32], a: &[Lane], b: &[Lane], first: bool) {
    let (rows, cols) = (a.len(), b.len());
    if split(rows, cols) {
        let half = middle(rows);
        let (g1, g2) = g.split_at_mut(half * cols);
        let (a1, a2) = a.split_at(half);
        rayon::join(
            || outer_part::<FMA>(g1, a1, b, first),
            || outer_part::<FMA>(g2, a2, b, first),
        );
    } else {
        outer_whole::<FMA>(g, a, b, first);
    }
}

/// [`outer_acc`] on one thread.
#[inline(always)]
fn outer_whole<const FMA: bool>(g: &mut [f32], a: &[Lane], b: &[Lane], first: bool) {
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
            if first { 0.0 } else { 1.0 },
        );
        return;
    }
    if first {
        g.fill(0.0);
    }
    for lo in (0..cols).step_by(TILE) {
        let hi = (lo + TILE).min(cols);
        for (r, av) in a.iter().enumerate() {
            outer_row::<FMA>(&mut g[r * cols + lo..r * cols + hi], av, &b[lo..hi]);
        }
    }
}

/// One row of [`outer_acc`].
#[inline(always)]
fn outer_row<const FMA: bool>(row: &mut [f32], av: &Lane, b: &[Lane]) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA = true only inside `step_avx2`, which runs on AVX2 + FMA CPUs.
        unsafe { outer_row_avx2(row, av, b) };
        return;
    }
    for (gv, bv) in row.iter_mut().zip(b) {
        let mut part = [0f32; 8];
        for k in 0..LANES {
            part[k % 8] = madd::<FMA>(av[k], bv[k], part[k % 8]);
        }
        *gv += hsum8(&part);
    }
}

/// [`outer_row`] with AVX2 intrinsics: eight columns at a time, so that the sums over
/// the lanes are eight independent FMA chains, reduced to one vector of eight sums
/// by a tree of horizontal adds. (Left to itself, the compiler vectorised this loop
/// across columns, with gathers.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn outer_row_avx2(row: &mut [f32], av: &Lane, b: &[Lane]) {
    use std::arch::x86_64::*;
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

#[inline(always)]
fn hsum8(p: &[f32; 8]) -> f32 {
    ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]))
}

/// gb[r] += Σ_samples a[r]
#[inline(always)]
fn rowsum_acc(gb: &mut [f32], a: &[Lane]) {
    for (g, av) in gb.iter_mut().zip(a) {
        *g += av.iter().sum::<f32>();
    }
}

#[inline(always)]
fn bias_lanes(b: &[f32]) -> Vec<Lane> {
    b.iter().map(|&v| [v; LANES]).collect()
}

/// a ← a + b, lane by lane.
#[inline(always)]
fn add_lanes(a: &mut [Lane], b: &[Lane]) {
    for (av, bv) in a.iter_mut().zip(b) {
        for k in 0..LANES {
            av[k] += bv[k];
        }
    }
}

#[inline(always)]
fn masked(d: &[Lane], v: &mut [Lane]) {
    for (dv, x) in d.iter().zip(v.iter_mut()) {
        for k in 0..LANES {
            x[k] *= dv[k];
        }
    }
}

/// The forward and backward pass of one lane group, kept for the later passes.
struct Group<'x> {
    /// The group's data, `dims[0]` lanes, borrowed from the caller's batch.
    x: &'x [Lane],
    /// h[l]: the input of layer l ≥ 1, `dims[l]` units (h[0] empty: see `input`).
    h: Vec<Vec<Lane>>,
    /// d[l]: φ'(z_l) for the hidden layers l < layers − 1.
    d: Vec<Vec<Lane>>,
    /// Softmax of the logits.
    p: Vec<Lane>,
    /// e[l] = ∂L/∂z_l.
    e: Vec<Vec<Lane>>,
    /// wh[l] = W_l h_l, every layer's product without its bias (for ⟨·, W_l⟩).
    wh: Vec<Vec<Lane>>,
}

impl Group<'_> {
    /// The input of layer l.
    #[inline(always)]
    fn input(&self, l: usize) -> &[Lane] {
        if l == 0 { self.x } else { &self.h[l] }
    }
}

/// Gradient quotient of the batch and, when `meta`, ⟨∂GQ/∂W_l, W_l⟩ per layer.
/// `x` is `[batch][dims[0]]` row-major, `y` the labels.
pub fn step(net: &Member, x: &[f32], y: &[i64], eps: f32, meta: bool) -> (f64, Vec<f64>) {
    let lanes = rows_to_lanes(x, y.len(), net.dims[0]);
    step_lanes(net, &lanes, y, eps, meta)
}

/// [`step`] with the batch already lane-major: per group of [`LANES`] samples,
/// `[dims[0]][LANES]` (see [`rows_to_lanes`]). MetaInit draws its iid batch straight
/// into this layout and so never transposes it.
pub fn step_lanes(net: &Member, x: &[f32], y: &[i64], eps: f32, meta: bool) -> (f64, Vec<f64>) {
    assert_eq!(x.len(), y.len() * net.dims[0], "batch and labels disagree");
    let (x, rest) = x.as_chunks::<LANES>();
    assert!(rest.is_empty(), "batch must be a multiple of {LANES}");
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { step_avx2(net, x, y, eps, meta) };
        }
    }
    step_impl::<false>(net, x, y, eps, meta)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn step_avx2(net: &Member, x: &[Lane], y: &[i64], eps: f32, meta: bool) -> (f64, Vec<f64>) {
    step_impl::<true>(net, x, y, eps, meta)
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

#[inline(always)]
fn step_impl<const FMA: bool>(
    net: &Member,
    x: &[Lane],
    y: &[i64],
    eps: f32,
    meta: bool,
) -> (f64, Vec<f64>) {
    let dims = net.dims;
    let layers = dims.len() - 1;
    let batch = y.len();
    assert!(
        batch % LANES == 0 && batch > 0,
        "batch must be a multiple of {LANES}"
    );
    let c = 1.0 / batch as f32;
    let n0 = dims[0];

    // Forward and backward per lane group; the gradient g.
    // Written whole by the first lane group's outer products.
    let mut g = ParamVec::scratch(dims);
    // Plain loops, no closures, in this function and those it inlines: a closure is
    // compiled without the caller's target features.
    let mut groups: Vec<Group> = Vec::with_capacity(batch / LANES);
    for j in 0..batch / LANES {
        {
            let xg = &x[j * n0..(j + 1) * n0];
            let mut h = vec![Vec::new()];
            let mut d = Vec::with_capacity(layers);
            let mut logits = Vec::new();
            let mut wh = Vec::with_capacity(layers);
            for l in 0..layers {
                let mut z = vec![ZERO; dims[l + 1]];
                mat_acc::<FMA>(net.w[l], if l == 0 { xg } else { &h[l] }, &mut z);
                wh.push(z.clone());
                for (zv, bv) in z.iter_mut().zip(net.b[l]) {
                    for k in 0..LANES {
                        zv[k] += bv;
                    }
                }
                if l + 1 < layers {
                    let mut dl = vec![ZERO; z.len()];
                    for (zv, dv) in z.iter_mut().zip(dl.iter_mut()) {
                        for k in 0..LANES {
                            dv[k] = if zv[k] > 0.0 { 1.0 } else { net.slope };
                            zv[k] *= dv[k];
                        }
                    }
                    d.push(dl);
                    h.push(z);
                } else {
                    logits = z;
                }
            }
            let classes = logits.len();
            let mut p = vec![ZERO; classes];
            for k in 0..LANES {
                let max = logits
                    .iter()
                    .map(|v| v[k])
                    .fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (pv, lv) in p.iter_mut().zip(&logits) {
                    pv[k] = (lv[k] - max).exp();
                    sum += pv[k];
                }
                for pv in p.iter_mut() {
                    pv[k] /= sum;
                }
            }
            let mut top = p.clone();
            for k in 0..LANES {
                let label = y[j * LANES + k] as usize;
                top[label][k] -= 1.0;
                for t in top.iter_mut() {
                    t[k] *= c;
                }
            }
            let mut e = vec![Vec::new(); layers];
            e[layers - 1] = top;
            for l in (1..layers).rev() {
                let mut t = vec![ZERO; dims[l]];
                mat_t_acc::<FMA>(net.w[l], &e[l], &mut t);
                masked(&d[l - 1], &mut t);
                e[l - 1] = t;
            }
            for l in 0..layers {
                outer_acc::<FMA>(&mut g.w[l], &e[l], if l == 0 { xg } else { &h[l] }, j == 0);
                rowsum_acc(&mut g.b[l], &e[l]);
            }
            groups.push(Group {
                x: xg,
                h,
                d,
                p,
                e,
                wh,
            });
        }
    }

    let along_g = hvp::<FMA>(net, &groups, Along::Gradient(&g), c);
    let hg = &along_g.hv;

    // GQ and its adjoints Ḡ, H̄.
    let count: usize = (0..layers).map(|l| dims[l + 1] * (dims[l] + 1)).sum();
    let inv = 1.0 / count as f32;
    let mut gq = 0f64;
    // Written whole by `quotient_adjoints`.
    let mut gbar = ParamVec::scratch(dims);
    let mut hbar = ParamVec::scratch(dims);
    for l in 0..layers {
        gq += quotient_adjoints::<FMA>(&g.w[l], &hg.w[l], &mut gbar.w[l], &mut hbar.w[l], eps, inv);
        gq += quotient_adjoints::<FMA>(&g.b[l], &hg.b[l], &mut gbar.b[l], &mut hbar.b[l], eps, inv);
    }
    let gq = gq / count as f64;
    if !meta || !gq.is_finite() {
        return (gq, vec![f64::NAN; layers]);
    }

    // ∇GQ = H (Ḡ + H H̄) + ∇(H̄ᵀ H g).
    let along_hbar = hvp::<FMA>(net, &groups, Along::Dense(&hbar, &along_g.traces), c);
    let mut dir = along_hbar.hv;
    for l in 0..layers {
        for (a, b) in dir.w[l].iter_mut().zip(&gbar.w[l]) {
            *a += b;
        }
        for (a, b) in dir.b[l].iter_mut().zip(&gbar.b[l]) {
            *a += b;
        }
    }
    // H·dir and the mixed term enter only through ⟨·, W_l⟩, and an outer product
    // a ⊗ h_l has ⟨a ⊗ h_l, W_l⟩ = a·(W_l h_l): no outer products at all, and at the
    // first layer none with the data: ⟨·, W_0⟩ = Σ_samples s_0·(W_0 x).
    let (mut dots, s0) = meta_dots::<FMA>(
        net,
        &groups,
        &dir,
        (&hbar, &along_hbar.traces, &along_hbar.ahead),
        (&g, &along_g.traces),
        c,
    );
    let mut dot0 = 0f64;
    for (gr, s0) in groups.iter().zip(&s0) {
        for (wx, s) in gr.wh[0].iter().zip(s0) {
            for k in 0..LANES {
                dot0 += wx[k] as f64 * s[k] as f64;
            }
        }
    }
    dots[0] = dot0;
    (gq, dots)
}

/// A row-major batch `[batch][n]` in the lane-major layout of [`step_lanes`], in
/// blocks of 16 features: 32 rows read side by side (one cache line each) while
/// each lane is written whole.
pub fn rows_to_lanes(x: &[f32], batch: usize, n: usize) -> Vec<f32> {
    let mut out = layout_buffer(x, batch, n);
    for (rows, lanes) in x
        .chunks_exact(LANES * n)
        .zip(out.chunks_exact_mut(LANES * n))
    {
        let (lanes, _) = lanes.as_chunks_mut::<LANES>();
        for lo in (0..n).step_by(16) {
            let hi = (lo + 16).min(n);
            for k in 0..LANES {
                for (lane, v) in lanes[lo..hi].iter_mut().zip(&rows[k * n + lo..k * n + hi]) {
                    lane[k] = *v;
                }
            }
        }
    }
    out
}

/// The output of a layout conversion of `x`, a batch of `batch` samples of `n` features.
fn layout_buffer(x: &[f32], batch: usize, n: usize) -> Vec<f32> {
    assert!(batch % LANES == 0, "batch must be a multiple of {LANES}");
    assert_eq!(x.len(), batch * n, "batch and features disagree");
    vec![0f32; x.len()]
}

/// The inverse of [`rows_to_lanes`].
pub fn lanes_to_rows(x: &[f32], batch: usize, n: usize) -> Vec<f32> {
    let mut out = layout_buffer(x, batch, n);
    for (lanes, rows) in x
        .chunks_exact(LANES * n)
        .zip(out.chunks_exact_mut(LANES * n))
    {
        let (lanes, _) = lanes.as_chunks::<LANES>();
        for (f, lane) in lanes.iter().enumerate() {
            for k in 0..LANES {
                rows[k * n + f] = lane[k];
            }
        }
    }
    out
}

/// Σ over units and lanes of a ⊙ b, in f64.
#[inline(always)]
fn lane_dot(a: &[Lane], b: &[Lane]) -> f64 {
    let mut acc = ZERO;
    for (av, bv) in a.iter().zip(b) {
        for k in 0..LANES {
            acc[k] += av[k] * bv[k];
        }
    }
    acc.iter().map(|&v| v as f64).sum()
}

/// Σ |q| over one parameter tensor, q = (g − Hg)/(g + ε·sign g) − 1, and the adjoints
/// Ḡ = ∂GQ/∂g, H̄ = ∂GQ/∂(Hg) with GQ = Σ|q| · `inv`: one division per entry, in
/// blocks of eight with eight partial sums (written out in AVX2 where `FMA`, as the
/// compiler left the loop scalar; the same operations in the same order, so the
/// same numbers).
#[inline(always)]
fn quotient_adjoints<const FMA: bool>(
    gv: &[f32],
    hv: &[f32],
    gb: &mut [f32],
    hb: &mut [f32],
    eps: f32,
    inv: f32,
) -> f64 {
    let n = gv.len();
    assert!(hv.len() == n && gb.len() == n && hb.len() == n);
    let blocks = n / 8 * 8;
    let mut sums = [0f64; 8];
    // Entries before `done` are written by the AVX2 blocks.
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA = true only inside `step_avx2`, which runs on AVX2 + FMA CPUs;
        // the four slices are n ≥ blocks long (asserted above).
        unsafe { quotient_blocks_avx2((gv, hv), (gb, hb), (eps, inv), blocks, &mut sums) };
        done = blocks;
    }
    for i in done..n {
        let (q, a, b) = quotient_one(gv[i], hv[i], eps, inv);
        sums[i % 8] += q as f64;
        gb[i] = a;
        hb[i] = b;
    }
    sums.iter().sum()
}

/// One entry of [`quotient_adjoints`]: |q| and the two adjoints.
#[inline(always)]
fn quotient_one(g: f32, h: f32, eps: f32, inv: f32) -> (f32, f32, f32) {
    let s = if g >= 0.0 { 1.0 } else { -1.0 };
    let r = 1.0 / (g + eps * s);
    let q = (g - h) * r - 1.0;
    let sq = if q > 0.0 {
        1.0
    } else if q < 0.0 {
        -1.0
    } else {
        0.0
    };
    (q.abs(), sq * (eps * s + h) * r * r * inv, -sq * r * inv)
}

/// The first `blocks` entries (a multiple of eight) of [`quotient_adjoints`], eight
/// lanes at a time, adding lane m's |q| to `sums[m]`.
///
/// # Safety
/// The CPU must have AVX2, and every slice must hold at least `blocks` entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quotient_blocks_avx2(
    (gv, hv): (&[f32], &[f32]),
    (gb, hb): (&mut [f32], &mut [f32]),
    (eps, inv): (f32, f32),
    blocks: usize,
    sums: &mut [f64; 8],
) {
    use std::arch::x86_64::*;
    let (one, minus, zero) = (
        _mm256_set1_ps(1.0),
        _mm256_set1_ps(-1.0),
        _mm256_setzero_ps(),
    );
    let (epsv, invv) = (_mm256_set1_ps(eps), _mm256_set1_ps(inv));
    let sign = _mm256_set1_ps(-0.0);
    // SAFETY (all loads and stores): i + 8 ≤ blocks ≤ each slice's length.
    let (mut lo, mut hi) = unsafe {
        (
            _mm256_loadu_pd(sums.as_ptr()),
            _mm256_loadu_pd(sums.as_ptr().add(4)),
        )
    };
    for i in (0..blocks).step_by(8) {
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
        unsafe {
            _mm256_storeu_ps(gb.as_mut_ptr().add(i), a);
            _mm256_storeu_ps(hb.as_mut_ptr().add(i), b);
        }
        let qa = _mm256_andnot_ps(sign, q);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(qa)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(qa)));
    }
    unsafe {
        _mm256_storeu_pd(sums.as_mut_ptr(), lo);
        _mm256_storeu_pd(sums.as_mut_ptr().add(4), hi);
    }
}

/// What a Hessian-vector product along v leaves of one lane group for the later
/// passes: its R-forward pre-activation at the top, every layer's input Rh_l and
/// W_l Rh_l, and every layer's Re_l.
/// The hyper-dual pass of [`meta_dots`] along two directions a and b has these as
/// its parts along a and along b: only its mixed part is new.
struct Trace {
    rz_top: Vec<Lane>,
    /// rh[l], the input of layer l ≥ 1 (rh[0] empty).
    rh: Vec<Vec<Lane>>,
    /// wrh[l] = W_l rh[l] for l ≥ 1 (wrh[0] empty).
    wrh: Vec<Vec<Lane>>,
    /// re[l] = R(∂L/∂z_l).
    re: Vec<Vec<Lane>>,
}

/// A Hessian-vector product, its [`Trace`] per lane group, and per lane group the
/// products of v's matrices that [`meta_dots`] needs, where [`hvp`] took them in
/// its own GEMMs.
struct Hvp {
    hv: ParamVec,
    traces: Vec<Trace>,
    ahead: Vec<Ahead>,
}

/// For layers l ≥ 1 whose products go through MKL, v_l·Rh_l and v_lᵀ·Re_l along
/// another product's trace (empty elsewhere, and for the product along g).
struct Ahead {
    fwd: Vec<Vec<Lane>>,
    bwd: Vec<Vec<Lane>>,
}

/// The direction of a Hessian-vector product.
enum Along<'a> {
    /// The batch's gradient g: g_l = Σ_samples e_l ⊗ h_l, whose products go through
    /// the Gram matrices where that is cheaper ([`through_gram`]).
    Gradient(&'a ParamVec),
    /// A dense vector v, and the trace of another product, along which [`meta_dots`]
    /// needs v_l·Rh_l and v_lᵀ·Re_l: those are taken in the same GEMMs as this
    /// product's v_l·h_l and v_lᵀ·e_l (64 columns instead of 32, v_l read once).
    Dense(&'a ParamVec, &'a [Trace]),
}

/// H v by the R-operator over every lane group.
#[inline(always)]
fn hvp<const FMA: bool>(net: &Member, groups: &[Group], along: Along, c: f32) -> Hvp {
    let dims = net.dims;
    let layers = dims.len() - 1;
    let batch = groups.len() * LANES;
    let v = match along {
        Along::Gradient(v) | Along::Dense(v, _) => v,
    };
    // Whether v's products with layer l's inputs go through g's Gram matrices, or
    // are taken together with the other trace's.
    let gram =
        |l: usize| matches!(along, Along::Gradient(_)) && through_gram(dims[l + 1], dims[l], batch);
    let paired =
        |l: usize| matches!(along, Along::Dense(..)) && l > 0 && through_mkl(dims[l + 1], dims[l]);
    // Written whole by the first lane group's outer products.
    let mut out = ParamVec::scratch(dims);
    let mut traces = Vec::with_capacity(groups.len());
    let mut aheads = Vec::with_capacity(groups.len());
    for (j, gr) in groups.iter().enumerate() {
        // R-forward: Rz_l = W_l Rh_l + V_l h_l + v_b; Rh_{l+1} = D_l Rz_l (Rh_0 = 0).
        let mut rh: Vec<Vec<Lane>> = vec![Vec::new(); layers];
        let mut wrhs: Vec<Vec<Lane>> = vec![Vec::new(); layers];
        let mut ahead = Ahead {
            fwd: vec![Vec::new(); layers],
            bwd: vec![Vec::new(); layers],
        };
        let mut rz_top = Vec::new();
        for l in 0..layers {
            let mut rz = bias_lanes(&v.b[l]);
            match along {
                _ if gram(l) => gram_acc(groups, l, gr.input(l), &mut rz),
                Along::Dense(_, other) if paired(l) => {
                    let mut f = vec![ZERO; dims[l + 1]];
                    let x = (gr.input(l), other[j].rh[l].as_slice());
                    mat_acc_pair::<FMA>(&v.w[l], x, &mut rz, &mut f);
                    ahead.fwd[l] = f;
                }
                _ => mat_acc::<FMA>(&v.w[l], gr.input(l), &mut rz),
            }
            if l > 0 {
                let mut wrh = vec![ZERO; dims[l + 1]];
                mat_acc::<FMA>(net.w[l], &rh[l], &mut wrh);
                add_lanes(&mut rz, &wrh);
                wrhs[l] = wrh;
            }
            if l + 1 < layers {
                masked(&gr.d[l], &mut rz);
                rh[l + 1] = rz;
            } else {
                rz_top = rz;
            }
        }
        // Top: Re = c (p ⊙ Rz − p (p·Rz)).
        let mut re = gr.p.clone();
        for k in 0..LANES {
            let dot: f32 = gr.p.iter().zip(&rz_top).map(|(p, r)| p[k] * r[k]).sum();
            for (rv, rz) in re.iter_mut().zip(&rz_top) {
                rv[k] = c * rv[k] * (rz[k] - dot);
            }
        }
        // R-backward.
        let mut res: Vec<Vec<Lane>> = vec![Vec::new(); layers];
        for l in (0..layers).rev() {
            if l > 0 {
                // Re ⊗ h_l + e ⊗ Rh_l
                let first = j == 0;
                outer_acc_pair::<FMA>(&mut out.w[l], (&re, gr.input(l)), (&gr.e[l], &rh[l]), first);
            } else {
                outer_acc::<FMA>(&mut out.w[l], &re, gr.input(l), j == 0);
            }
            rowsum_acc(&mut out.b[l], &re);
            if l == 0 {
                res[0] = re;
                break;
            }
            let mut t = vec![ZERO; dims[l]];
            mat_t_acc::<FMA>(net.w[l], &re, &mut t);
            match along {
                _ if gram(l) => gram_t_acc(groups, l, &gr.e[l], &mut t),
                Along::Dense(_, other) if paired(l) => {
                    let mut b = vec![ZERO; dims[l]];
                    let z = (gr.e[l].as_slice(), other[j].re[l].as_slice());
                    mat_t_acc_pair::<FMA>(&v.w[l], z, &mut t, &mut b);
                    ahead.bwd[l] = b;
                }
                _ => mat_t_acc::<FMA>(&v.w[l], &gr.e[l], &mut t),
            }
            masked(&gr.d[l - 1], &mut t);
            res[l] = std::mem::replace(&mut re, t);
        }
        traces.push(Trace {
            rz_top,
            rh,
            wrh: wrhs,
            re: res,
        });
        aheads.push(ahead);
    }
    Hvp {
        hv: out,
        traces,
        ahead: aheads,
    }
}

/// ⟨(H dir)_l + ∇_{W_l} (aᵀ H(θ) b), W_l⟩ for layers l ≥ 1, with the directions a
/// and b held fixed, and per lane group the adjoint s_0 at the first layer's output
/// whose product with W_0 x gives layer 0's part.
///
/// The second term is the reverse pass of a forward pass in hyper-dual numbers
/// along a and b (parts: value, along a, along b, mixed). Its parts along a and b
/// are the R-forward and R-backward passes of the Hessian-vector products along a
/// and b, taken from their traces (`along_a`, `along_b`): the reverse pass's part
/// along a is Re along b, that along b is Re along a, and the mixed part's adjoint
/// is ∂L/∂z itself. What is left, the mixed part of the forward pass and the value
/// part of the reverse pass, follows the same linear recursions through W_l and the
/// masks as the R-forward and R-backward passes along dir, whose only use is the
/// first term: the two run as one, on the sums u = Rh_dir + h_ab and
/// s = Re_dir + z̄. Four products per layer each way, against two and seven, and
/// two and eight, run separately.
///
/// b must be the batch's gradient g (its products go through the Gram matrices where
/// [`through_gram`] says so), and `ahead_a` what the product along a took ahead along
/// b's trace (A_l Rh_b,l and A_lᵀ Re_b,l; computed here where it is empty).
#[inline(always)]
fn meta_dots<const FMA: bool>(
    net: &Member,
    groups: &[Group],
    dir: &ParamVec,
    (a, along_a, ahead_a): (&ParamVec, &[Trace], &[Ahead]),
    (b, along_b): (&ParamVec, &[Trace]),
    c: f32,
) -> (Vec<f64>, Vec<Vec<Lane>>) {
    let dims = net.dims;
    let layers = dims.len() - 1;
    let batch = groups.len() * LANES;
    let mut dots = vec![0f64; layers];
    let mut s0 = Vec::with_capacity(groups.len());
    let groups_traces = groups.iter().zip(along_a).zip(along_b);
    for (((gr, ta), tb), ahead) in groups_traces.zip(ahead_a) {
        // Forward: z_l = dir_b + Dir_l h_l + A_l h_b,l + B_l h_a,l + W_l u_l, u_{l+1} =
        // D_l z_l (u_0 = 0): the R-forward pre-activation along dir plus the
        // hyper-dual pass's mixed part. ⟨e_l ⊗ u_l, W_l⟩ = e_l·(W_l u_l).
        let mut u: Vec<Lane> = Vec::new();
        let mut z_top = Vec::new();
        for l in 0..layers {
            let mut z = bias_lanes(&dir.b[l]);
            mat_acc::<FMA>(&dir.w[l], gr.input(l), &mut z);
            if l > 0 {
                if ahead.fwd[l].is_empty() {
                    mat_acc::<FMA>(&a.w[l], &tb.rh[l], &mut z);
                } else {
                    add_lanes(&mut z, &ahead.fwd[l]);
                }
                if through_gram(dims[l + 1], dims[l], batch) {
                    gram_acc(groups, l, &ta.rh[l], &mut z);
                } else {
                    mat_acc::<FMA>(&b.w[l], &ta.rh[l], &mut z);
                }
                let mut wu = vec![ZERO; dims[l + 1]];
                mat_acc::<FMA>(net.w[l], &u, &mut wu);
                dots[l] += lane_dot(&gr.e[l], &wu);
                add_lanes(&mut z, &wu);
            }
            if l + 1 < layers {
                masked(&gr.d[l], &mut z);
                u = z;
            } else {
                z_top = z;
            }
        }
        let (za_top, zb_top) = (&ta.rz_top, &tb.rz_top);
        // At the logits: s = c p ⊙ (z − p·z) (Re along dir plus the mixed part's
        // share of the loss e·z_ab) + c p ⊙ (u_a u_b − Σ p u_a u_b), with u_a = z_a − p·z_a
        // and u_b likewise (the adjoint of Σ_n z_aᵀ M z_b, M = c(diag p − p pᵀ)).
        let classes = gr.p.len();
        let mut s = vec![ZERO; classes];
        for k in 0..LANES {
            let p = |i: usize| gr.p[i][k];
            let pa: f32 = (0..classes).map(|i| p(i) * za_top[i][k]).sum();
            let pb: f32 = (0..classes).map(|i| p(i) * zb_top[i][k]).sum();
            let pz: f32 = (0..classes).map(|i| p(i) * z_top[i][k]).sum();
            let cross: f32 = (0..classes)
                .map(|i| p(i) * (za_top[i][k] - pa) * (zb_top[i][k] - pb))
                .sum();
            for i in 0..classes {
                let ua = za_top[i][k] - pa;
                let ub = zb_top[i][k] - pb;
                s[i][k] = c * p(i) * (ua * ub - cross) + c * p(i) * (z_top[i][k] - pz);
            }
        }
        // Reverse: ⟨s_l ⊗ h_l + Re_b ⊗ h_a + Re_a ⊗ h_b, W_l⟩, then
        // s_{l−1} = D_{l−1} (W_lᵀ s_l + Dir_lᵀ e_l + A_lᵀ Re_b,l + B_lᵀ Re_a,l).
        for l in (1..layers).rev() {
            dots[l] += lane_dot(&s, &gr.wh[l])
                + lane_dot(&tb.re[l], &ta.wrh[l])
                + lane_dot(&ta.re[l], &tb.wrh[l]);
            let mut t = vec![ZERO; dims[l]];
            mat_t_acc::<FMA>(net.w[l], &s, &mut t);
            mat_t_acc::<FMA>(&dir.w[l], &gr.e[l], &mut t);
            if ahead.bwd[l].is_empty() {
                mat_t_acc::<FMA>(&a.w[l], &tb.re[l], &mut t);
            } else {
                add_lanes(&mut t, &ahead.bwd[l]);
            }
            if through_gram(dims[l + 1], dims[l], batch) {
                gram_t_acc(groups, l, &ta.re[l], &mut t);
            } else {
                mat_t_acc::<FMA>(&b.w[l], &ta.re[l], &mut t);
            }
            masked(&gr.d[l - 1], &mut t);
            s = t;
        }
        s0.push(s);
    }
    (dots, s0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_avx2_quotient_gives_the_scalar_numbers() {
        #[cfg(target_arch = "x86_64")]
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return;
        }
        // Every branch of q's sign and of g's (zero and −0 included), and a tail
        // beyond the last block of eight.
        let n = 8 * 40 + 5;
        let mut gv: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let mut hv: Vec<f32> = (0..n)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.011)
            .collect();
        (gv[3], gv[9], gv[17], hv[17]) = (0.0, -0.0, 2.0, 0.0);
        hv[40] = gv[40];
        for eps in [1e-5f32, 0.0] {
            let run = |simd: bool| {
                let (mut gb, mut hb) = (vec![7f32; n], vec![7f32; n]);
                let sum = if simd {
                    quotient_adjoints::<true>(&gv, &hv, &mut gb, &mut hb, eps, 0.25)
                } else {
                    quotient_adjoints::<false>(&gv, &hv, &mut gb, &mut hb, eps, 0.25)
                };
                (
                    sum.to_bits(),
                    gb.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    hb.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                )
            };
            let (scalar, simd) = (run(false), run(true));
            assert_eq!(simd.0, scalar.0, "Σ|q| at eps {eps}");
            assert_eq!(simd.1, scalar.1, "Ḡ at eps {eps}");
            assert_eq!(simd.2, scalar.2, "H̄ at eps {eps}");
        }
    }
}
