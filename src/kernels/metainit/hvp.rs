//! The Hessian-vector products by the R-operator, and the pass that gives
//! ⟨H·dir + ∇(aᵀ H(θ) b), W_l⟩ from their traces (see `meta_dots`).

use super::gemm::{
    gram_acc, gram_t_acc, mat_acc_pair, mat_t_acc_pair, outer_acc_pair, through_gram, through_mkl,
};
use super::loops::{
    Write, add_lanes, bias_lanes, lane_dot, masked, mat_acc, mat_t_acc, outer_acc, rowsum_acc,
};
use super::pool::ParamVec;
use super::step::{Group, Member};
use super::{LANES, Lane, ZERO};
use crate::kernels::simd::Simd;

/// What a Hessian-vector product along v leaves of one lane group for the later
/// passes: its R-forward pre-activation at the top, every layer's input Rh_l and
/// W_l Rh_l, and every layer's Re_l.
/// The hyper-dual pass of [`meta_dots`] along two directions a and b has these as
/// its parts along a and along b: only its mixed part is new.
pub(super) struct Trace {
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
pub(super) struct Hvp {
    pub(super) hv: ParamVec,
    pub(super) traces: Vec<Trace>,
    pub(super) ahead: Vec<Ahead>,
}

/// For layers l ≥ 1 whose products go through MKL, v_l·Rh_l and v_lᵀ·Re_l along
/// another product's trace (empty elsewhere, and for the product along g).
pub(super) struct Ahead {
    fwd: Vec<Vec<Lane>>,
    bwd: Vec<Vec<Lane>>,
}

/// The direction of a Hessian-vector product.
pub(super) enum Along<'a> {
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
pub(super) fn hvp<S: Simd>(simd: S, net: &Member, groups: &[Group], along: Along, c: f32) -> Hvp {
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
                    mat_acc_pair(simd, &v.w[l], x, &mut rz, &mut f);
                    ahead.fwd[l] = f;
                }
                _ => mat_acc(simd, &v.w[l], gr.input(l), &mut rz),
            }
            if l > 0 {
                let mut wrh = vec![ZERO; dims[l + 1]];
                mat_acc(simd, net.w[l], &rh[l], &mut wrh);
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
                let write = Write::for_group(j);
                outer_acc_pair(
                    simd,
                    &mut out.w[l],
                    (&re, gr.input(l)),
                    (&gr.e[l], &rh[l]),
                    write,
                );
            } else {
                outer_acc(simd, &mut out.w[l], &re, gr.input(l), Write::for_group(j));
            }
            rowsum_acc(&mut out.b[l], &re);
            if l == 0 {
                res[0] = re;
                break;
            }
            let mut t = vec![ZERO; dims[l]];
            mat_t_acc(simd, net.w[l], &re, &mut t);
            match along {
                _ if gram(l) => gram_t_acc(groups, l, &gr.e[l], &mut t),
                Along::Dense(_, other) if paired(l) => {
                    let mut b = vec![ZERO; dims[l]];
                    let z = (gr.e[l].as_slice(), other[j].re[l].as_slice());
                    mat_t_acc_pair(simd, &v.w[l], z, &mut t, &mut b);
                    ahead.bwd[l] = b;
                }
                _ => mat_t_acc(simd, &v.w[l], &gr.e[l], &mut t),
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
pub(super) fn meta_dots<S: Simd>(
    simd: S,
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
            mat_acc(simd, &dir.w[l], gr.input(l), &mut z);
            if l > 0 {
                if ahead.fwd[l].is_empty() {
                    mat_acc(simd, &a.w[l], &tb.rh[l], &mut z);
                } else {
                    add_lanes(&mut z, &ahead.fwd[l]);
                }
                if through_gram(dims[l + 1], dims[l], batch) {
                    gram_acc(groups, l, &ta.rh[l], &mut z);
                } else {
                    mat_acc(simd, &b.w[l], &ta.rh[l], &mut z);
                }
                let mut wu = vec![ZERO; dims[l + 1]];
                mat_acc(simd, net.w[l], &u, &mut wu);
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
            mat_t_acc(simd, net.w[l], &s, &mut t);
            mat_t_acc(simd, &dir.w[l], &gr.e[l], &mut t);
            if ahead.bwd[l].is_empty() {
                mat_t_acc(simd, &a.w[l], &tb.re[l], &mut t);
            } else {
                add_lanes(&mut t, &ahead.bwd[l]);
            }
            if through_gram(dims[l + 1], dims[l], batch) {
                gram_t_acc(groups, l, &ta.re[l], &mut t);
            } else {
                mat_t_acc(simd, &b.w[l], &ta.re[l], &mut t);
            }
            masked(&gr.d[l - 1], &mut t);
            s = t;
        }
        s0.push(s);
    }
    (dots, s0)
}
