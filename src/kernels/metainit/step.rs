//! One MetaInit step of one member: the forward and backward pass of each lane
//! group (the gradient g), the Hessian-vector product along g, the gradient
//! quotient and its adjoints, and (where asked for) ⟨∂GQ/∂W_l, W_l⟩ per layer
//! through the passes of `hvp`.

use super::hvp::{Along, hvp, meta_dots};
use super::loops::{Write, masked, mat_acc, mat_t_acc, outer_acc, rowsum_acc};
use super::pool::ParamVec;
#[cfg(target_arch = "x86_64")]
use super::simd::quotient_blocks_avx2;
use super::{LANES, Lane, ZERO, layout::rows_to_lanes};
use crate::kernels::simd::{Avx2Fma, Kernel, Simd, dispatch};

/// One member: per layer l, W_l `[dims[l+1]][dims[l]]` row-major and b_l `[dims[l+1]]`.
pub struct Member<'a> {
    pub dims: &'a [usize],
    pub w: Vec<&'a [f32]>,
    pub b: Vec<&'a [f32]>,
    pub slope: f32,
}

/// The forward and backward pass of one lane group, kept for the later passes.
pub(super) struct Group<'x> {
    /// The group's data, `dims[0]` lanes, borrowed from the caller's batch.
    pub(super) x: &'x [Lane],
    /// h[l]: the input of layer l ≥ 1, `dims[l]` units (h[0] empty: see `input`).
    pub(super) h: Vec<Vec<Lane>>,
    /// d[l]: φ'(z_l) for the hidden layers l < layers − 1.
    pub(super) d: Vec<Vec<Lane>>,
    /// Softmax of the logits.
    pub(super) p: Vec<Lane>,
    /// e[l] = ∂L/∂z_l.
    pub(super) e: Vec<Vec<Lane>>,
    /// wh[l] = W_l h_l, every layer's product without its bias (for ⟨·, W_l⟩).
    pub(super) wh: Vec<Vec<Lane>>,
}

impl Group<'_> {
    /// The input of layer l.
    #[inline(always)]
    pub(super) fn input(&self, l: usize) -> &[Lane] {
        if l == 0 { self.x } else { &self.h[l] }
    }
}

/// What a step computes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Want {
    /// The gradient quotient alone (per layer NaN in place of the dots).
    Quotient,
    /// The quotient and ⟨∂GQ/∂W_l, W_l⟩ per layer.
    MetaGradient,
}

/// Gradient quotient of the batch and, where `want` says so, ⟨∂GQ/∂W_l, W_l⟩ per
/// layer. `x` is `[batch][dims[0]]` row-major, `y` the labels.
pub fn step(net: &Member, x: &[f32], y: &[i64], eps: f32, want: Want) -> (f64, Vec<f64>) {
    let lanes = rows_to_lanes(x, y.len(), net.dims[0]);
    step_lanes(net, &lanes, y, eps, want)
}

/// [`step`] with the batch already lane-major: per group of [`LANES`] samples,
/// `[dims[0]][LANES]` (see [`rows_to_lanes`]). MetaInit draws its iid batch straight
/// into this layout and so never transposes it.
pub fn step_lanes(net: &Member, x: &[f32], y: &[i64], eps: f32, want: Want) -> (f64, Vec<f64>) {
    assert_eq!(x.len(), y.len() * net.dims[0], "batch and labels disagree");
    let (x, rest) = x.as_chunks::<LANES>();
    assert!(rest.is_empty(), "batch must be a multiple of {LANES}");
    dispatch(
        Avx2Fma::detect(),
        Step {
            net,
            x,
            y,
            eps,
            want,
        },
    )
}

/// [`step_lanes`]' arguments, as a kernel with a scalar and an AVX2 twin.
struct Step<'a, 'm> {
    net: &'a Member<'m>,
    x: &'a [Lane],
    y: &'a [i64],
    eps: f32,
    want: Want,
}

impl Kernel for Step<'_, '_> {
    type Output = (f64, Vec<f64>);

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> (f64, Vec<f64>) {
        step_impl(simd, self.net, self.x, self.y, self.eps, self.want)
    }
}

// Plain loops, no closures, in the functions below and those they inline (a
// closure need not share its caller's target features).

#[inline(always)]
fn step_impl<S: Simd>(
    simd: S,
    net: &Member,
    x: &[Lane],
    y: &[i64],
    eps: f32,
    want: Want,
) -> (f64, Vec<f64>) {
    let dims = net.dims;
    let layers = dims.len() - 1;
    let batch = y.len();
    assert!(
        batch.is_multiple_of(LANES) && batch > 0,
        "batch must be a multiple of {LANES}"
    );
    let c = 1.0 / batch as f32;
    let n0 = dims[0];

    // Forward and backward per lane group; the gradient g.
    // Written whole by the first lane group's outer products.
    let mut g = ParamVec::scratch(dims);
    let mut groups: Vec<Group> = Vec::with_capacity(batch / LANES);
    for j in 0..batch / LANES {
        let xg = &x[j * n0..(j + 1) * n0];
        let labels = &y[j * LANES..(j + 1) * LANES];
        groups.push(group_pass(
            simd,
            net,
            xg,
            labels,
            c,
            (&mut g, Write::for_group(j)),
        ));
    }

    let along_g = hvp(simd, net, &groups, Along::Gradient(&g), c);
    let (gq, gbar, hbar) = quotient(simd, dims, &g, &along_g.hv, eps);
    if want == Want::Quotient || !gq.is_finite() {
        return (gq, vec![f64::NAN; layers]);
    }

    // ∇GQ = H (Ḡ + H H̄) + ∇(H̄ᵀ H g).
    let along_hbar = hvp(simd, net, &groups, Along::Dense(&hbar, &along_g.traces), c);
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
    let (mut dots, s0) = meta_dots(
        simd,
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

/// The forward pass of one lane group `xg`: every hidden layer's output h (h[0]
/// empty) and mask d, the logits, and every layer's W_l h_l.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn forward<S: Simd>(
    simd: S,
    net: &Member,
    xg: &[Lane],
) -> (Vec<Vec<Lane>>, Vec<Vec<Lane>>, Vec<Lane>, Vec<Vec<Lane>>) {
    let dims = net.dims;
    let layers = dims.len() - 1;
    let mut h = vec![Vec::new()];
    let mut d = Vec::with_capacity(layers);
    let mut logits = Vec::new();
    let mut wh = Vec::with_capacity(layers);
    for l in 0..layers {
        let mut z = vec![ZERO; dims[l + 1]];
        mat_acc(simd, net.w[l], if l == 0 { xg } else { &h[l] }, &mut z);
        wh.push(z.clone());
        for (zv, bv) in z.iter_mut().zip(net.b[l]) {
            for v in zv.iter_mut() {
                *v += bv;
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
    (h, d, logits, wh)
}

/// The forward and backward pass of lane group `xg` with its `labels`, whose
/// share of the gradient goes into `g` as `write` says; the mean's factor `c` is
/// 1 / batch.
#[inline(always)]
fn group_pass<'x, S: Simd>(
    simd: S,
    net: &Member,
    xg: &'x [Lane],
    labels: &[i64],
    c: f32,
    (g, write): (&mut ParamVec, Write),
) -> Group<'x> {
    let dims = net.dims;
    let layers = dims.len() - 1;
    let (h, d, logits, wh) = forward(simd, net, xg);
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
        let label = labels[k] as usize;
        top[label][k] -= 1.0;
        for t in top.iter_mut() {
            t[k] *= c;
        }
    }
    let mut e = vec![Vec::new(); layers];
    e[layers - 1] = top;
    for l in (1..layers).rev() {
        let mut t = vec![ZERO; dims[l]];
        mat_t_acc(simd, net.w[l], &e[l], &mut t);
        masked(&d[l - 1], &mut t);
        e[l - 1] = t;
    }
    for l in 0..layers {
        outer_acc(
            simd,
            &mut g.w[l],
            &e[l],
            if l == 0 { xg } else { &h[l] },
            write,
        );
        rowsum_acc(&mut g.b[l], &e[l]);
    }
    Group {
        x: xg,
        h,
        d,
        p,
        e,
        wh,
    }
}

/// GQ of the gradient `g` and its Hessian-vector product `hg`, with its adjoints
/// Ḡ and H̄.
#[inline(always)]
fn quotient<S: Simd>(
    simd: S,
    dims: &[usize],
    g: &ParamVec,
    hg: &ParamVec,
    eps: f32,
) -> (f64, ParamVec, ParamVec) {
    let layers = dims.len() - 1;
    let count: usize = (0..layers).map(|l| dims[l + 1] * (dims[l] + 1)).sum();
    let inv = 1.0 / count as f32;
    let mut gq = 0f64;
    // Written whole by `quotient_adjoints`.
    let mut gbar = ParamVec::scratch(dims);
    let mut hbar = ParamVec::scratch(dims);
    for l in 0..layers {
        let weights_then_biases = [
            (&g.w[l], &hg.w[l], &mut gbar.w[l], &mut hbar.w[l]),
            (&g.b[l], &hg.b[l], &mut gbar.b[l], &mut hbar.b[l]),
        ];
        for (g, hg, gbar, hbar) in weights_then_biases {
            gq += quotient_adjoints(simd, g, hg, gbar, hbar, eps, inv);
        }
    }
    (gq / count as f64, gbar, hbar)
}

/// Σ |q| over one parameter tensor, q = (g − Hg)/(g + ε·sign g) − 1, and the adjoints
/// Ḡ = ∂GQ/∂g, H̄ = ∂GQ/∂(Hg) with GQ = Σ|q| · `inv`: one division per entry, in
/// blocks of eight with eight partial sums (written out in AVX2 intrinsics for
/// [`Avx2Fma`], as the compiler left the loop scalar; the same operations in the
/// same order, so the same numbers).
#[inline(always)]
fn quotient_adjoints<S: Simd>(
    simd: S,
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
    if let Some(avx2) = simd.avx2() {
        quotient_blocks_avx2(avx2, (gv, hv), (gb, hb), (eps, inv), blocks, &mut sums);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::{Scalar, avx2_for_test};
    use crate::kernels::{assert_close, test_values};

    #[test]
    fn the_avx2_quotient_gives_the_scalar_numbers() {
        let Some(avx2) = avx2_for_test() else { return };
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
            fn run<S: Simd>(simd: S, gv: &[f32], hv: &[f32], eps: f32) -> [Vec<u64>; 3] {
                let n = gv.len();
                let (mut gb, mut hb) = (vec![7f32; n], vec![7f32; n]);
                let sum = quotient_adjoints(simd, gv, hv, &mut gb, &mut hb, eps, 0.25);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits() as u64).collect();
                [vec![sum.to_bits()], bits(&gb), bits(&hb)]
            }
            let (scalar, simd) = (run(Scalar, &gv, &hv, eps), run(avx2, &gv, &hv, eps));
            assert_eq!(simd[0], scalar[0], "Σ|q| at eps {eps}");
            assert_eq!(simd[1], scalar[1], "Ḡ at eps {eps}");
            assert_eq!(simd[2], scalar[2], "H̄ at eps {eps}");
        }
    }

    #[test]
    fn the_avx2_step_agrees_with_the_scalar_one() {
        let Some(avx2) = avx2_for_test() else { return };
        // The paper's width 10 over two lane groups; and a wide first layer whose
        // products run in the loops (60 inputs: below MKL's 64 columns) split over
        // two threads, with leaky ReLU.
        for (dims, slope, batch) in [
            (vec![20, 10, 10, 10, 10], 0.0, 64),
            (vec![60, 300, 10], 0.1, 32),
        ] {
            let layers = dims.len() - 1;
            let w: Vec<Vec<f32>> = (0..layers)
                .map(|l| {
                    test_values(
                        dims[l] * dims[l + 1],
                        l as u64,
                        (6.0 / dims[l] as f32).sqrt(),
                    )
                })
                .collect();
            let b: Vec<Vec<f32>> = dims[1..].iter().map(|&n| vec![0.0; n]).collect();
            let net = Member {
                dims: &dims,
                w: w.iter().map(|v| v.as_slice()).collect(),
                b: b.iter().map(|v| v.as_slice()).collect(),
                slope,
            };
            let rows = test_values(batch * dims[0], 77, 1.0);
            let lanes = rows_to_lanes(&rows, batch, dims[0]);
            let (x, _) = lanes.as_chunks::<LANES>();
            let y: Vec<i64> = (0..batch as i64).map(|i| i * 7 % 10).collect();
            let step = || Step {
                net: &net,
                x,
                y: &y,
                eps: 1e-5,
                want: Want::MetaGradient,
            };
            let (gq, dots) = step().run(Scalar);
            let (gq_simd, dots_simd) = avx2.vectorize(step());
            // The twins differ only where FMA rounds a multiply-add once instead of
            // twice (about 6e-8 relative), but the quotient divides by g + ε·sign g,
            // which magnifies the rounding of the smallest gradient entries: measured
            // 7e-6 of GQ and 4e-4 of the largest ⟨∂GQ/∂W_l, W_l⟩ on these inputs. The
            // bounds are the kernel's against autograd (tests/ensemble.rs); an
            // indexing slip would be of order one.
            assert_close("GQ", &[gq_simd], &[gq], 1e-3, gq.abs());
            let scale = dots.iter().fold(0f64, |s, v| s.max(v.abs()));
            assert_close("dots", &dots_simd, &dots, 2e-3, scale);
        }
    }
}
