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

/// A vector in parameter space: per layer a matrix and a bias.
#[derive(Clone)]
struct ParamVec {
    w: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
}

impl ParamVec {
    fn zeros(dims: &[usize]) -> ParamVec {
        ParamVec {
            w: (0..dims.len() - 1)
                .map(|l| vec![0.0; dims[l + 1] * dims[l]])
                .collect(),
            b: (0..dims.len() - 1)
                .map(|l| vec![0.0; dims[l + 1]])
                .collect(),
        }
    }
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
split_half!(outer_part, outer_avx2, outer_whole, (g: &mut [f32], a: &[Lane], b: &[Lane]));

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

/// g[r][c] += Σ_samples a[r] · b[c]; split like [`mat_acc`], by rows.
#[inline(always)]
fn outer_acc<const FMA: bool>(g: &mut [f32], a: &[Lane], b: &[Lane]) {
    let (rows, cols) = (a.len(), b.len());
    if split(rows, cols) {
        let half = middle(rows);
        let (g1, g2) = g.split_at_mut(half * cols);
        let (a1, a2) = a.split_at(half);
        rayon::join(
            || outer_part::<FMA>(g1, a1, b),
            || outer_part::<FMA>(g2, a2, b),
        );
    } else {
        outer_whole::<FMA>(g, a, b);
    }
}

/// [`outer_acc`] on one thread.
#[inline(always)]
fn outer_whole<const FMA: bool>(g: &mut [f32], a: &[Lane], b: &[Lane]) {
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
            1.0,
        );
        return;
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

/// `buf` as `n` zero lanes, in the allocation it already has.
#[inline(always)]
fn zeroed(buf: &mut Vec<Lane>, n: usize) {
    buf.clear();
    buf.resize(n, ZERO);
}

#[inline(always)]
fn bias_lanes(b: &[f32]) -> Vec<Lane> {
    b.iter().map(|&v| [v; LANES]).collect()
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
    let mut g = ParamVec::zeros(dims);
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
                outer_acc::<FMA>(&mut g.w[l], &e[l], if l == 0 { xg } else { &h[l] });
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

    let along_g = hvp::<FMA>(net, &groups, &g, c, false);
    let hg = &along_g.hv;

    // GQ and its adjoints Ḡ, H̄.
    let count: usize = (0..layers).map(|l| dims[l + 1] * (dims[l] + 1)).sum();
    let inv = 1.0 / count as f32;
    let mut gq = 0f64;
    let mut gbar = ParamVec::zeros(dims);
    let mut hbar = ParamVec::zeros(dims);
    for l in 0..layers {
        gq += quotient_adjoints(&g.w[l], &hg.w[l], &mut gbar.w[l], &mut hbar.w[l], eps, inv);
        gq += quotient_adjoints(&g.b[l], &hg.b[l], &mut gbar.b[l], &mut hbar.b[l], eps, inv);
    }
    let gq = gq / count as f64;
    if !meta || !gq.is_finite() {
        return (gq, vec![f64::NAN; layers]);
    }

    // ∇GQ = H (Ḡ + H H̄) + ∇(H̄ᵀ H g).
    let along_hbar = hvp::<FMA>(net, &groups, &hbar, c, false);
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
    // first layer none with the data: ⟨·, W_0⟩ = Σ_samples (Re_0 + z̄_0)·(W_0 x).
    let first = hvp::<FMA>(net, &groups, &dir, c, true);
    let (third, bar0) = mixed::<FMA>(net, &groups, &hbar, &g, c, &along_hbar.rz0, &along_g.rz0);
    let mut dot0 = 0f64;
    for ((gr, re0), b0) in groups.iter().zip(&first.re0).zip(&bar0) {
        for ((wx, r), b) in gr.wh[0].iter().zip(re0).zip(b0) {
            for k in 0..LANES {
                dot0 += wx[k] as f64 * (r[k] as f64 + b[k] as f64);
            }
        }
    }
    let dots = (0..layers)
        .map(|l| {
            if l == 0 {
                dot0
            } else {
                first.dots[l] + third[l]
            }
        })
        .collect();
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
/// Ḡ = ∂GQ/∂g, H̄ = ∂GQ/∂(Hg) with GQ = Σ|q| · `inv` (one division per entry,
/// branch-free, in blocks of eight with eight partial sums so that it vectorises).
#[inline(always)]
fn quotient_adjoints(
    gv: &[f32],
    hv: &[f32],
    gb: &mut [f32],
    hb: &mut [f32],
    eps: f32,
    inv: f32,
) -> f64 {
    #[inline(always)]
    fn one(g: f32, h: f32, eps: f32, inv: f32) -> (f32, f32, f32) {
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
    let n = gv.len();
    let mut sums = [0f64; 8];
    let blocks = n / 8 * 8;
    for i in (0..blocks).step_by(8) {
        let (g8, h8) = (&gv[i..i + 8], &hv[i..i + 8]);
        let (gb8, hb8) = (&mut gb[i..i + 8], &mut hb[i..i + 8]);
        let mut qa = [0f32; 8];
        for m in 0..8 {
            let (q, a, b) = one(g8[m], h8[m], eps, inv);
            qa[m] = q;
            gb8[m] = a;
            hb8[m] = b;
        }
        for m in 0..8 {
            sums[m] += qa[m] as f64;
        }
    }
    for i in blocks..n {
        let (q, a, b) = one(gv[i], hv[i], eps, inv);
        sums[i % 8] += q as f64;
        gb[i] = a;
        hb[i] = b;
    }
    sums.iter().sum()
}

/// A Hessian-vector product with what its first layer leaves for reuse: per lane
/// group the R-forward pre-activation Rz_0 = V_0 x + v_b (the hyper-dual pass needs
/// exactly that along the same direction) and Re_0, whose outer product with the
/// data is the first layer's part of Hv.
struct FirstLayer {
    /// Hv itself (no layers with `dots_only`).
    hv: ParamVec,
    rz0: Vec<Vec<Lane>>,
    re0: Vec<Vec<Lane>>,
    /// With `dots_only`: ⟨(Hv)_l, W_l⟩ for l ≥ 1.
    dots: Vec<f64>,
}

/// H v by the R-operator over every lane group.
#[inline(always)]
fn hvp<const FMA: bool>(
    net: &Member,
    groups: &[Group],
    v: &ParamVec,
    c: f32,
    dots_only: bool,
) -> FirstLayer {
    let dims = net.dims;
    let layers = dims.len() - 1;
    // Hv's matrices and biases only when they are wanted.
    let shape: &[usize] = if dots_only { &[0] } else { dims };
    let mut out = ParamVec::zeros(shape);
    let mut dots = vec![0f64; layers];
    let (mut rz0s, mut re0s) = (Vec::new(), Vec::new());
    // Scratch reused across layers and groups.
    let (mut wrh, mut t) = (Vec::new(), Vec::new());
    for gr in groups {
        // R-forward: Rz_l = W_l Rh_l + V_l h_l + v_b; Rh_{l+1} = D_l Rz_l (Rh_0 = 0).
        let mut rh: Vec<Vec<Lane>> = vec![Vec::new(); layers];
        let mut rz_top = Vec::new();
        for l in 0..layers {
            let mut rz = bias_lanes(&v.b[l]);
            mat_acc::<FMA>(&v.w[l], gr.input(l), &mut rz);
            if l > 0 && dots_only {
                // ⟨e_l ⊗ Rh_l, W_l⟩ = e_l·(W_l Rh_l).
                zeroed(&mut wrh, dims[l + 1]);
                mat_acc::<FMA>(net.w[l], &rh[l], &mut wrh);
                dots[l] += lane_dot(&gr.e[l], &wrh);
                for (a, b) in rz.iter_mut().zip(&wrh) {
                    for k in 0..LANES {
                        a[k] += b[k];
                    }
                }
            } else if l > 0 {
                mat_acc::<FMA>(net.w[l], &rh[l], &mut rz);
            } else {
                rz0s.push(rz.clone());
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
        for l in (0..layers).rev() {
            if dots_only {
                if l > 0 {
                    // ⟨Re_l ⊗ h_l, W_l⟩ = Re_l·(W_l h_l).
                    dots[l] += lane_dot(&re, &gr.wh[l]);
                }
            } else {
                outer_acc::<FMA>(&mut out.w[l], &re, gr.input(l));
                if l > 0 {
                    outer_acc::<FMA>(&mut out.w[l], &gr.e[l], &rh[l]);
                }
            }
            if l == 0 {
                re0s.push(re.clone());
            }
            if !dots_only {
                rowsum_acc(&mut out.b[l], &re);
            }
            if l > 0 {
                zeroed(&mut t, dims[l]);
                mat_t_acc::<FMA>(net.w[l], &re, &mut t);
                mat_t_acc::<FMA>(&v.w[l], &gr.e[l], &mut t);
                masked(&gr.d[l - 1], &mut t);
                std::mem::swap(&mut re, &mut t);
            }
        }
    }
    FirstLayer {
        hv: out,
        rz0: rz0s,
        re0: re0s,
        dots,
    }
}

/// ⟨∇_{W_l} (aᵀ H(θ) b), W_l⟩ with the directions a and b held fixed, for layers
/// l ≥ 1, by the reverse pass of a hyper-dual forward pass (parts: value, along a,
/// along b, mixed); and the adjoint at the first layer's output per lane group.
#[inline(always)]
fn mixed<const FMA: bool>(
    net: &Member,
    groups: &[Group],
    a: &ParamVec,
    b: &ParamVec,
    c: f32,
    za0: &[Vec<Lane>],
    zb0: &[Vec<Lane>],
) -> (Vec<f64>, Vec<Vec<Lane>>) {
    let dims = net.dims;
    let layers = dims.len() - 1;
    let mut dots = vec![0f64; layers];
    let mut bar0 = Vec::with_capacity(groups.len());
    // Scratch for the reverse pass, reused across layers and groups.
    let (mut t, mut ta, mut tb, mut tab) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (j, gr) in groups.iter().enumerate() {
        // Forward: ha, hb, hab per layer input (zero at the data, never read there).
        let mut ha: Vec<Vec<Lane>> = vec![Vec::new()];
        let mut hb = ha.clone();
        let mut hab = ha.clone();
        let (mut za_top, mut zb_top, mut zab_top) = (Vec::new(), Vec::new(), Vec::new());
        // W_l ha_l, W_l hb_l, W_l hab_l per layer, kept for ⟨·, W_l⟩ in the reverse pass.
        let (mut wa, mut wb, mut wab) = (vec![Vec::new()], vec![Vec::new()], vec![Vec::new()]);
        for l in 0..layers {
            // At the first layer z_a and z_b are the R-forward pre-activations of
            // the Hessian-vector products along a and b, computed there already.
            let (mut za, mut zb) = if l == 0 {
                (za0[j].clone(), zb0[j].clone())
            } else {
                (bias_lanes(&a.b[l]), bias_lanes(&b.b[l]))
            };
            let mut zab = vec![ZERO; dims[l + 1]];
            if l > 0 {
                let n = dims[l + 1];
                let (mut w_ha, mut w_hb) = (vec![ZERO; n], vec![ZERO; n]);
                // Grouped by matrix, so that each comes from memory once (a wide
                // network's weights do not stay in cache from one layer to the next);
                // every sum keeps its order.
                mat_acc::<FMA>(net.w[l], &ha[l], &mut w_ha);
                mat_acc::<FMA>(net.w[l], &hb[l], &mut w_hb);
                mat_acc::<FMA>(net.w[l], &hab[l], &mut zab);
                wab.push(zab.clone());
                mat_acc::<FMA>(&a.w[l], gr.input(l), &mut za);
                mat_acc::<FMA>(&a.w[l], &hb[l], &mut zab);
                mat_acc::<FMA>(&b.w[l], gr.input(l), &mut zb);
                mat_acc::<FMA>(&b.w[l], &ha[l], &mut zab);
                for r in 0..n {
                    for k in 0..LANES {
                        za[r][k] += w_ha[r][k];
                        zb[r][k] += w_hb[r][k];
                    }
                }
                wa.push(w_ha);
                wb.push(w_hb);
            }
            if l + 1 < layers {
                masked(&gr.d[l], &mut za);
                masked(&gr.d[l], &mut zb);
                masked(&gr.d[l], &mut zab);
                ha.push(za);
                hb.push(zb);
                hab.push(zab);
            } else {
                za_top = za;
                zb_top = zb;
                zab_top = zab;
            }
        }
        // The mixed part of the loss, Σ_n [z_aᵀ M z_b + e·z_ab] with M = c(diag p − p pᵀ),
        // and its adjoints at the logits.
        let classes = gr.p.len();
        let mut bar = vec![ZERO; classes];
        let mut bar_a = vec![ZERO; classes];
        let mut bar_b = vec![ZERO; classes];
        let mut bar_ab = gr.e[layers - 1].clone();
        for k in 0..LANES {
            let p = |i: usize| gr.p[i][k];
            let pa: f32 = (0..classes).map(|i| p(i) * za_top[i][k]).sum();
            let pb: f32 = (0..classes).map(|i| p(i) * zb_top[i][k]).sum();
            let pab: f32 = (0..classes).map(|i| p(i) * zab_top[i][k]).sum();
            let s: f32 = (0..classes)
                .map(|i| p(i) * (za_top[i][k] - pa) * (zb_top[i][k] - pb))
                .sum();
            for i in 0..classes {
                let ua = za_top[i][k] - pa;
                let ub = zb_top[i][k] - pb;
                bar_a[i][k] = c * p(i) * ub;
                bar_b[i][k] = c * p(i) * ua;
                bar[i][k] = c * p(i) * (ua * ub - s) + c * p(i) * (zab_top[i][k] - pab);
            }
        }
        for l in (0..layers).rev() {
            if l == 0 {
                bar0.push(bar);
                break;
            }
            // ⟨bar ⊗ h + bar_a ⊗ ha + bar_b ⊗ hb + bar_ab ⊗ hab, W_l⟩.
            dots[l] += lane_dot(&bar, &gr.wh[l])
                + lane_dot(&bar_a, &wa[l])
                + lane_dot(&bar_b, &wb[l])
                + lane_dot(&bar_ab, &wab[l]);
            let n = dims[l];
            for v in [&mut t, &mut ta, &mut tb, &mut tab] {
                zeroed(v, n);
            }
            // Grouped by matrix, as in the forward pass; each sum keeps its order.
            mat_t_acc::<FMA>(net.w[l], &bar, &mut t);
            mat_t_acc::<FMA>(net.w[l], &bar_a, &mut ta);
            mat_t_acc::<FMA>(net.w[l], &bar_b, &mut tb);
            mat_t_acc::<FMA>(net.w[l], &bar_ab, &mut tab);
            mat_t_acc::<FMA>(&a.w[l], &bar_a, &mut t);
            mat_t_acc::<FMA>(&a.w[l], &bar_ab, &mut tb);
            mat_t_acc::<FMA>(&b.w[l], &bar_b, &mut t);
            mat_t_acc::<FMA>(&b.w[l], &bar_ab, &mut ta);
            for v in [&mut t, &mut ta, &mut tb, &mut tab] {
                masked(&gr.d[l - 1], v);
            }
            std::mem::swap(&mut bar, &mut t);
            std::mem::swap(&mut bar_a, &mut ta);
            std::mem::swap(&mut bar_b, &mut tb);
            std::mem::swap(&mut bar_ab, &mut tab);
        }
    }
    (dots, bar0)
}
