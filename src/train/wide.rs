//! Training of networks without normalisation through explicit forward and
//! backward passes. libtorch's batched GEMMs write into buffers allocated once per
//! run (the weight and bias gradients straight into the flat buffer that Adam
//! reads); the activation, its derivative and the loss are plain loops. Through
//! autograd a wide network paid more for its fresh tensors every step (page
//! faults on each new buffer) and for packing the gradients into one buffer than
//! for its GEMMs. The loops and the member-by-member step are kernels
//! (`crate::kernels::wide`); here is which member runs where and when.

use super::{Evaluation, FlatAdam, Job, MemberResult, Record, Shuffler};
use crate::kernels::adam::AdamStep;
use crate::kernels::wide::{
    MemberParams, MemberWork, activate, activate_backward, cross_entropy_backward, evaluate_member,
    loss_and_hits, member_step, per_member,
};
use crate::kernels::{blas, tensor_slice, tensor_slice_mut, try_tensor_slice};
use crate::net::{Ensemble, Norm};
use anyhow::Result;
use rayon::prelude::*;
use tch::{Kind, Tensor};

/// Whether [`train`] handles `net` (no normalisation layers).
pub fn applies(net: &Ensemble) -> bool {
    net.arch.norm == Norm::None
}

/// Checks that an `_out` op wrote into `out`'s own storage (a shape mismatch would
/// have made libtorch reallocate it, away from the flat buffers).
fn into(out: &Tensor, result: Tensor) {
    assert_eq!(
        out.data_ptr(),
        result.data_ptr(),
        "an _out op reallocated its output"
    );
}

/// Trains `net` (no normalisation, any width and depth) as [`super::train`] does:
/// member by member on rayon's threads through single-threaded MKL GEMMs where
/// libtorch carries MKL, else through libtorch's batched GEMMs.
pub fn train(job: Job) -> Result<Vec<MemberResult>> {
    if blas::available() {
        train_members(job)
    } else {
        train_batched(job)
    }
}

/// [`train`] through libtorch's batched GEMMs, all members at once, each GEMM
/// threaded by libtorch.
pub fn train_batched(job: Job) -> Result<Vec<MemberResult>> {
    let (net, data, opts) = (job.net, job.data, job.opts);
    let _guard = tch::no_grad_guard();
    let k = net.members;
    let arch = net.arch;
    let dims = arch.layer_dims(); // (out, in) of every Linear layer
    let depth = arch.depth;
    let slope = arch.slope as f32;
    let b = opts.batch_size;
    let (ki, bi) = (k as i64, b as i64);
    let mut adam = FlatAdam::new(net);
    // The parameters and their gradients as ensembles of views into the flat buffers.
    let params = net.view_flat(&adam.flat);
    let grads = net.view_flat(&adam.grad);
    let biases: Vec<Tensor> = params.biases.iter().map(|b| b.unsqueeze(1)).collect(); // [K, 1, out]
    let opts_f = (Kind::Float, tch::Device::Cpu);
    let x_buf = Tensor::empty([ki * bi, arch.input as i64], opts_f);
    let x = x_buf.view([ki, bi, arch.input as i64]);
    // Every hidden layer's output after the activation, kept for the backward pass.
    let mut acts: Vec<Tensor> = dims[..depth]
        .iter()
        .map(|&(out, _)| Tensor::empty([ki, bi, out as i64], opts_f))
        .collect();
    let mut logits = Tensor::empty([ki, bi, arch.classes as i64], opts_f);
    let mut back = [0, 1].map(|_| Tensor::empty([ki, bi, arch.width as i64], opts_f));

    let mut shuffler = Shuffler::new(job.shuffle, data.train_len());
    let mut record = Record::new(k, opts, &params, data);
    for step in 1..=opts.steps {
        let idx = Tensor::from_slice(&shuffler.next(b));
        into(&x_buf, data.train_x.index_select_out(&x_buf, 0, &idx));
        let labels = Vec::<i64>::try_from(data.train_y.index_select(0, &idx))?;
        // Forward: z_l = h_{l−1} W_lᵀ + b_l, h_l = φ(z_l) in place.
        for l in 0..=depth {
            let (before, after) = acts.split_at_mut(l);
            let input = if l == 0 { &x } else { &before[l - 1] };
            let out = if l == depth {
                &mut logits
            } else {
                &mut after[0]
            };
            into(
                out,
                biases[l].baddbmm_out(out, input, &params.weights[l].transpose(1, 2)),
            );
            if l < depth {
                activate(tensor_slice_mut(out), slope);
            }
        }
        let losses = cross_entropy_backward(tensor_slice_mut(&mut logits), &labels, k, b);
        record.losses(step, &losses);
        // Backward: dW_l = g_lᵀ h_{l−1}, db_l = Σ_batch g_l, g_{l−1} = φ'·(g_l W_l).
        for l in (0..=depth).rev() {
            let input = if l == 0 { &x } else { &acts[l - 1] };
            // g, the gradient of layer l's output: the logits' at the top, else what
            // layer l + 1 left in back[(l + 1) % 2]; layer l leaves its input's in
            // back[l % 2].
            let [even, odd] = &mut back;
            let (g, next) = if l % 2 == 0 {
                (&*odd, even)
            } else {
                (&*even, odd)
            };
            let g = if l == depth { &logits } else { g };
            let (gw, gb) = (&grads.weights[l], &grads.biases[l]);
            into(gw, g.transpose(1, 2).bmm_out(gw, input));
            into(
                gb,
                g.sum_intlist_out(gb, [1i64].as_slice(), false, Kind::Float),
            );
            if l > 0 {
                into(next, g.bmm_out(next, &params.weights[l]));
                activate_backward(tensor_slice_mut(next), tensor_slice(&acts[l - 1]), slope);
            }
        }
        adam.apply(step, opts);
        record.evaluate_if_due(step, &params, data);
    }
    Ok(record.results)
}

/// [`train`] member by member: each rayon task trains one member through all its
/// steps (batch, forward, loss, backward and Adam update, with single-threaded MKL
/// GEMMs) and evaluates it when due, so the two cores work on different members,
/// nothing waits on a threaded GEMM, no gradient buffer of the whole ensemble is
/// written and read back, and a member's weights and moments stay in the
/// last-level cache from one step to the next where they fit. Members are
/// independent, so this is the same arithmetic as stepping them all together.
pub fn train_members(job: Job) -> Result<Vec<MemberResult>> {
    let (net, data, opts) = (job.net, job.data, job.opts);
    let _guard = tch::no_grad_guard();
    let k = net.members;
    let dims = net.arch.layer_dims(); // (out, in) of every Linear layer
    let slope = net.arch.slope as f32;
    let b = opts.batch_size;
    let train_x = try_tensor_slice(&data.train_x)?;
    let train_y = Vec::<i64>::try_from(&data.train_y)?;
    let test_x = try_tensor_slice(&data.test_x)?;
    let test_y = Vec::<i64>::try_from(&data.test_y)?;
    let eval_at = super::eval_schedule(opts);
    let train_len = data.train_len();
    let mut flat = Vec::<f32>::try_from(net.to_flat())?;
    let (mut m, mut v) = (vec![0f32; flat.len()], vec![0f32; flat.len()]);
    let members: Vec<MemberParams> = per_member(&mut flat, &dims, k)
        .into_iter()
        .zip(
            per_member(&mut m, &dims, k)
                .into_iter()
                .zip(per_member(&mut v, &dims, k)),
        )
        .map(|(params, (m, v))| MemberParams { params, m, v })
        .collect();
    let results = members
        .into_par_iter()
        .zip(job.shuffle)
        .enumerate()
        .map(|(j, (mut member, stream))| {
            let mut work = MemberWork::new(&dims, b);
            let mut shuffler = Shuffler::new(vec![stream], train_len);
            let mut result = MemberResult::default();
            let evaluate = |step: usize, member: &MemberParams, result: &mut MemberResult| {
                if eval_at.binary_search(&step).is_ok() {
                    let (loss, acc) = evaluate_member(
                        &member.params,
                        &dims,
                        slope,
                        (test_x, &test_y),
                        MEMBER_CHUNK,
                    );
                    result.evals.push(Evaluation {
                        step,
                        test_loss: loss,
                        test_acc: acc,
                    });
                }
            };
            evaluate(0, &member, &mut result);
            for step in 1..=opts.steps {
                let idx = shuffler.next(b); // [B]
                let adam = AdamStep::new(step, opts.adam_config());
                let loss = member_step(
                    &mut work,
                    &mut member,
                    &dims,
                    (train_x, &train_y),
                    &idx,
                    slope,
                    (&adam, opts.lrs[j]),
                );
                result.push_loss(step, loss);
                evaluate(step, &member, &mut result);
            }
            result
        })
        .collect();
    Ok(results)
}

/// Samples per chunk of [`evaluate`]: a `[K, chunk, width]` activation buffer of
/// about 24 MB (1,000 samples at K = 30 and width 200): smaller chunks pay
/// per-chunk overhead, larger ones gain nothing and leave the caches, and
/// libtorch's own path allocates a fresh `[K, width, 4096]` tensor per layer.
fn eval_chunk(k: usize, width: usize) -> usize {
    (24_000_000 / (4 * k * width.max(1))).clamp(64, 4096)
}

/// Per-member test loss and accuracy of `net` (no normalisation) over `x: [n, in]`
/// and `y: [n]`, as [`super::evaluate_tch`] computes them: chunks of samples run
/// through buffers allocated once, each member's batched GEMMs write in place, and
/// the activation is applied in place.
pub fn evaluate(net: &Ensemble, x: &Tensor, y: &Tensor) -> (Vec<f64>, Vec<f64>) {
    if blas::available() && x.is_contiguous() && x.kind() == Kind::Float {
        return evaluate_members(net, x, y, MEMBER_CHUNK);
    }
    evaluate_in_chunks(net, x, y, eval_chunk(net.members, net.arch.width))
}

/// Samples per chunk of [`evaluate_members`]: a member's `[chunk, width]`
/// activations stay in L2.
const MEMBER_CHUNK: usize = 512;

/// [`evaluate`] member by member on rayon's threads (see [`evaluate_member`]).
fn evaluate_members(net: &Ensemble, x: &Tensor, y: &Tensor, chunk: usize) -> (Vec<f64>, Vec<f64>) {
    let _guard = tch::no_grad_guard();
    let k = net.members;
    let dims = net.arch.layer_dims();
    let slope = net.arch.slope as f32;
    let labels = Vec::<i64>::try_from(y).expect("i64 labels");
    let x = tensor_slice(x);
    let mut flat = Vec::<f32>::try_from(net.to_flat()).expect("f32 parameters");
    per_member(&mut flat, &dims, k)
        .into_par_iter()
        .map(|params| evaluate_member(&params, &dims, slope, (x, &labels), chunk))
        .unzip()
}

/// [`evaluate`] in chunks of `chunk` samples (the last one shorter).
fn evaluate_in_chunks(
    net: &Ensemble,
    x: &Tensor,
    y: &Tensor,
    chunk: usize,
) -> (Vec<f64>, Vec<f64>) {
    let _guard = tch::no_grad_guard();
    let (k, arch) = (net.members, net.arch);
    let (depth, slope) = (arch.depth, arch.slope as f32);
    let n = x.size()[0] as usize;
    let labels = Vec::<i64>::try_from(y).expect("i64 labels");
    let chunk = chunk.clamp(1, n.max(1));
    let opts_f = (Kind::Float, tch::Device::Cpu);
    let biases: Vec<Tensor> = net.biases.iter().map(|b| b.unsqueeze(1)).collect(); // [K, 1, out]
    let (mut loss, mut hits) = (vec![0f64; k], vec![0u64; k]);
    // Two activation buffers and the logits for `len` samples.
    let buffers = |len: usize| {
        let (ki, li) = (k as i64, len as i64);
        let act = [0, 1].map(|_| Tensor::empty([ki, li, arch.width as i64], opts_f));
        (act, Tensor::empty([ki, li, arch.classes as i64], opts_f))
    };
    let (mut act, mut logits) = buffers(chunk);
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        if len != chunk {
            // The last, shorter chunk.
            (act, logits) = buffers(len);
        }
        let xc = x.narrow(0, start as i64, len as i64); // [len, in], shared by all members
        // `l` indexes the weights, the biases and the ping-pong buffers together.
        #[allow(clippy::needless_range_loop)]
        for l in 0..=depth {
            // Layer l reads act[(l − 1) % 2] and writes act[l % 2] (the logits at the top).
            let [even, odd] = &mut act;
            let (input, out) = if l % 2 == 0 {
                (&*odd, even)
            } else {
                (&*even, odd)
            };
            let out = if l == depth { &mut logits } else { out };
            if l == 0 {
                // The input is the same for every member: one [len, in] x [in, out]
                // GEMM per member, straight into its slice of the buffer.
                for m in 0..k as i64 {
                    let dst = out.get(m);
                    into(
                        &dst,
                        net.biases[0]
                            .get(m)
                            .addmm_out(&dst, &xc, &net.weights[0].get(m).tr()),
                    );
                }
            } else {
                into(
                    out,
                    biases[l].baddbmm_out(out, input, &net.weights[l].transpose(1, 2)),
                );
            }
            if l < depth {
                activate(tensor_slice_mut(out), slope);
            }
        }
        let part = loss_and_hits(tensor_slice(&logits), &labels[start..start + len], k, len);
        for (m, (l, h)) in part.into_iter().enumerate() {
            loss[m] += l;
            hits[m] += h;
        }
        start += len;
    }
    let n = n.max(1) as f64;
    (
        loss.iter().map(|l| l / n).collect(),
        hits.iter().map(|&h| h as f64 / n).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;
    use crate::init::dist::WeightDist;
    use crate::init::{Initializer, initialize, member_streams};
    use crate::net::Arch;
    use crate::seed::Key;
    use crate::train::TrainOptions;

    /// `k` He-normal networks of `arch`, the family `label`'s first members.
    fn he_networks(arch: &Arch, label: &str, k: usize) -> Ensemble {
        let mut streams = member_streams(5, &Key::new(label), 0, k);
        let (net, _) = initialize(
            &Initializer::He(WeightDist::Normal),
            arch,
            &mut streams,
            None,
        )
        .expect("He networks");
        net
    }

    #[test]
    fn chunked_evaluation_matches_libtorch_ops() {
        tch::manual_seed(3);
        let n = 1003;
        let x = Tensor::randn([n, 24], (Kind::Float, tch::Device::Cpu));
        let y = Tensor::randint(10, [n], (Kind::Int64, tch::Device::Cpu));
        for (depth, slope) in [(0, 0.0), (1, 0.0), (3, 0.2)] {
            let arch = Arch {
                input: 24,
                width: 20,
                depth,
                classes: 10,
                slope,
                norm: Norm::None,
            };
            let net = he_networks(&arch, "wide-eval", 3);
            let (tl, ta) = super::super::evaluate_tch(&net, &x, &y);
            // One chunk, chunks with a shorter last one, and chunks of 7 samples,
            // through batched libtorch GEMMs and member by member through MKL.
            let members = |chunk| blas::available().then(|| evaluate_members(&net, &x, &y, chunk));
            for (chunk, (wl, wa)) in [4096, 100, 7].into_iter().flat_map(|chunk| {
                std::iter::once(evaluate_in_chunks(&net, &x, &y, chunk))
                    .chain(members(chunk))
                    .map(move |r| (chunk, r))
            }) {
                for m in 0..3 {
                    // Both sum the same f32 products in different orders (relative
                    // error ~1e-6 for sums of at most 24 terms); the mean is in f64.
                    assert!(
                        (wl[m] - tl[m]).abs() <= 1e-5 * tl[m].abs().max(1.0),
                        "depth {depth}, chunk {chunk}, member {m}: loss {} vs {}",
                        wl[m],
                        tl[m]
                    );
                    // An argmax may flip only on a near-tie within that error.
                    assert!(
                        (wa[m] - ta[m]).abs() <= 1.0 / n as f64,
                        "depth {depth}, chunk {chunk}, member {m}: accuracy {} vs {}",
                        wa[m],
                        ta[m]
                    );
                }
            }
        }
    }

    #[test]
    fn member_by_member_training_matches_the_batched_path() {
        if !blas::available() {
            eprintln!("MKL not in this libtorch: only the batched path runs");
            return;
        }
        let data = Dataset::load(
            crate::data::DatasetName::parse("synthetic-tiny").expect("name"),
            crate::data::Normalization::Standard,
            &crate::data::DataSource::new(None),
        )
        .expect("synthetic data");
        for (width, depth, slope) in [(24, 3, 0.0), (20, 1, 0.2), (32, 0, 0.0)] {
            let arch = Arch {
                input: data.features(),
                width,
                depth,
                classes: 10,
                slope,
                norm: Norm::None,
            };
            let net = he_networks(&arch, "wide-train", 3);
            let mut opts = TrainOptions::adam(25, 16, vec![1e-2, 3e-3, 1e-3]);
            opts.eval_at = vec![10];
            let job = || Job {
                net: &net,
                data: &data,
                shuffle: member_streams(5, &Key::new("wide-shuffle"), 0, 3),
                opts: &opts,
            };
            let members = train_members(job()).expect("members");
            let batched = train_batched(job()).expect("batched");
            for (m, (a, b)) in members.iter().zip(&batched).enumerate() {
                assert_eq!(a.train_loss.len(), 25);
                // The same f32 arithmetic summed in other orders (relative rounding
                // ~1e-6 per product sum), compounded over 25 Adam steps at rates up
                // to 1e-2.
                for (step, (p, q)) in a.train_loss.iter().zip(&b.train_loss).enumerate() {
                    assert!(
                        (p - q).abs() <= 2e-4 * q.abs().max(1.0),
                        "width {width}, depth {depth}, member {m}, step {step}: loss {p} vs {q}"
                    );
                }
                assert_eq!(a.evals.len(), 2);
                for (e, f) in a.evals.iter().zip(&b.evals) {
                    assert_eq!(e.step, f.step);
                    assert!(
                        (e.test_loss - f.test_loss).abs() <= 1e-3 * f.test_loss.max(1.0),
                        "width {width}, depth {depth}, member {m}: test loss {} vs {}",
                        e.test_loss,
                        f.test_loss
                    );
                }
            }
        }
    }
}
