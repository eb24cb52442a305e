//! The closed-form schemes: He (normal, uniform, Bernoulli), Glorot, LeCun,
//! orthogonal, GSM, ZerO, ZerO* and identity, each producing one `[K, out, in]`
//! stack per Linear layer.

use super::Initializer;
use super::dist::WeightDist;
use crate::net::Arch;
use crate::seed::Stream;
use anyhow::{Result, bail};
use rayon::prelude::*;
use tch::{Kind, Tensor};

/// `[K, rows, cols]` iid unit-variance draws, member k's slice from `streams[k]`.
pub fn draw_stack(streams: &mut [Stream], dist: WeightDist, rows: usize, cols: usize) -> Tensor {
    let per = rows * cols;
    let mut values = vec![0f32; streams.len() * per];
    values
        .par_chunks_mut(per.max(1))
        .zip(streams.par_iter_mut())
        .for_each(|(chunk, rng)| dist.fill(rng, chunk));
    Tensor::from_slice(&values).view([streams.len() as i64, rows as i64, cols as i64])
}

/// The rectangular identity `[out, in]` (ones on the main diagonal).
pub fn rect_identity(out: usize, input: usize) -> Tensor {
    Tensor::eye_m(out as i64, input as i64, (Kind::Float, tch::Device::Cpu))
}

/// The Sylvester Hadamard matrix of order p (a power of two): H[i][j] = (−1)^popcount(i & j).
pub fn hadamard(p: usize) -> Tensor {
    assert!(p.is_power_of_two(), "Hadamard order must be a power of two");
    let values: Vec<f32> = (0..p * p)
        .map(|ij| {
            if ((ij / p) & (ij % p)).count_ones().is_multiple_of(2) {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    Tensor::from_slice(&values).view([p as i64, p as i64])
}

/// ZerO's matrix for `[out, in]`: the rectangular identity if out <= in, else
/// I_{out×p} · H_p / 2^{c/2} · I_{p×in} with c = ⌈log2 out⌉ and p = 2^c.
pub fn zero_matrix(out: usize, input: usize) -> Tensor {
    if out <= input {
        return rect_identity(out, input);
    }
    let p = out.next_power_of_two();
    let c = p.trailing_zeros() as f64;
    rect_identity(out, p)
        .matmul(&(hadamard(p) / 2f64.powf(c / 2.0)))
        .matmul(&rect_identity(p, input))
}

/// K copies of one matrix.
fn repeat(m: &Tensor, k: usize) -> Tensor {
    m.unsqueeze(0).repeat([k as i64, 1, 1])
}

/// Batched orthogonal matrices `[K, out, in]` with the given gain (QR of Gaussian
/// matrices, columns' signs fixed by R's diagonal so the law is Haar).
pub fn orthogonal_stack(streams: &mut [Stream], out: usize, input: usize, gain: f64) -> Tensor {
    let (rows, cols) = if out >= input {
        (out, input)
    } else {
        (input, out)
    };
    let a = draw_stack(streams, WeightDist::Normal, rows, cols); // [K, rows, cols], rows >= cols
    let (q, r) = Tensor::linalg_qr(&a.to_kind(Kind::Double), "reduced"); // q [K, rows, cols], r [K, cols, cols]
    let signs = r.diagonal(0, -2, -1).sign(); // [K, cols]
    let signs = signs.where_self(&signs.ne(0.0), &signs.ones_like());
    let q = (q * signs.unsqueeze(1)).to_kind(Kind::Float);
    let q = if out >= input {
        q
    } else {
        q.transpose(1, 2).contiguous()
    };
    q * gain
}

/// The weight stacks of a closed-form scheme.
pub fn weights(init: &Initializer, arch: &Arch, streams: &mut [Stream]) -> Result<Vec<Tensor>> {
    let k = streams.len();
    let dims = arch.layer_dims();
    let mut out = Vec::with_capacity(dims.len());
    for (l, &(fan_out, fan_in)) in dims.iter().enumerate() {
        let first = l == 0;
        let w = match init {
            Initializer::He(dist) => {
                let std = (2.0 / (fan_in as f64 * (1.0 + arch.slope * arch.slope))).sqrt();
                draw_stack(streams, *dist, fan_out, fan_in) * std
            }
            Initializer::GlorotNormal => {
                draw_stack(streams, WeightDist::Normal, fan_out, fan_in)
                    * (2.0 / (fan_in + fan_out) as f64).sqrt()
            }
            Initializer::LecunNormal => {
                draw_stack(streams, WeightDist::Normal, fan_out, fan_in)
                    * (1.0 / fan_in as f64).sqrt()
            }
            Initializer::Orthogonal(p) => orthogonal_stack(streams, fan_out, fan_in, p.gain),
            Initializer::Gsm => {
                let std = if first {
                    (1.0 / fan_in as f64).sqrt()
                } else {
                    (2.0 / fan_in as f64).sqrt()
                };
                let a = draw_stack(streams, WeightDist::Normal, fan_out / 2, fan_in / 2) * std; // [K, out/2, in/2]
                let top = Tensor::cat(&[&a, &(-&a)], 2); // [K, out/2, in]
                Tensor::cat(&[&top, &(-&top)], 1) // [K, out, in]
            }
            Initializer::Zero => repeat(&zero_matrix(fan_out, fan_in), k),
            Initializer::ZeroStar => {
                if first {
                    draw_stack(streams, WeightDist::Normal, fan_out, fan_in)
                        * (1.0 / fan_in as f64).sqrt()
                } else {
                    repeat(&zero_matrix(fan_out, fan_in), k)
                }
            }
            Initializer::Identity => repeat(&rect_identity(fan_out, fan_in), k),
            Initializer::MetaInit(_) | Initializer::Lsuv(_) => {
                bail!("{} is not a closed-form scheme", init.name())
            }
        };
        out.push(w.contiguous());
    }
    Ok(out)
}
