//! LSUV (Mishkin & Matas 2016), beyond the paper: orthonormal start, then layer by
//! layer, rescale the weights until the variance of the layer's output on a batch
//! of training inputs is 1 within a tolerance. Each member draws its own batch.

use super::InitReport;
use super::schemes::orthogonal_stack;
use crate::net::{Arch, Ensemble};
use crate::seed::Stream;
use anyhow::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// LSUV's hyper-parameters; a config may leave out any of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LsuvParams {
    /// Stop when |Var − 1| is below this.
    pub tolerance: f64,
    pub max_iterations: usize,
    /// Training inputs per member.
    pub batch: usize,
}

impl Default for LsuvParams {
    fn default() -> Self {
        LsuvParams {
            tolerance: 0.01,
            max_iterations: 20,
            batch: 512,
        }
    }
}

impl LsuvParams {
    /// Checks every hyper-parameter, naming the key: a finite tolerance > 0, at
    /// least one iteration, and two inputs per batch (a variance needs two).
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::positive("tolerance", self.tolerance)?;
        check::at_least("max_iterations", self.max_iterations as u64, 1)?;
        check::at_least("batch", self.batch as u64, 2)?;
        Ok(())
    }
}

pub fn lsuv(
    p: &LsuvParams,
    arch: &Arch,
    streams: &mut [Stream],
    data: &Tensor,
) -> Result<(Ensemble, InitReport)> {
    // Configs are checked when read (`Initializer::check_params`); this guards
    // callers that build parameters in code.
    super::Initializer::Lsuv(*p).check_arch(arch)?;
    crate::config::check::at_least("batch", p.batch as u64, 2)?;
    let k = streams.len() as i64;
    let dims = arch.layer_dims();
    let mut weights: Vec<Tensor> = dims
        .iter()
        .map(|&(o, i)| orthogonal_stack(streams, o, i, 1.0))
        .collect();
    let n = data.size()[0];
    let idx: Vec<i64> = streams
        .iter_mut()
        .flat_map(|rng| {
            (0..p.batch)
                .map(|_| rng.random_range(0..n))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut h = data
        .index_select(0, &Tensor::from_slice(&idx))
        .view([k, p.batch as i64, -1]); // [K, B, in]
    for (l, w) in weights.iter_mut().enumerate() {
        for _ in 0..p.max_iterations {
            let out = h.bmm(&w.transpose(1, 2)); // [K, B, out]
            let var = out.reshape([k, -1]).var_dim([1i64].as_slice(), true, false); // [K]
            let off = (&var - 1.0).abs().gt(p.tolerance);
            if !bool::try_from(off.any())? {
                break;
            }
            let scale = var
                .sqrt()
                .clamp_min(1e-12)
                .reciprocal()
                .where_self(&off, &var.ones_like());
            *w = &*w * scale.view([k, 1, 1]);
        }
        if l + 1 < dims.len() {
            let out = h.bmm(&w.transpose(1, 2));
            h = if arch.slope == 0.0 {
                out.relu()
            } else {
                out.prelu(&Tensor::from_slice(&[arch.slope as f32]))
            };
        }
    }
    Ok((
        Ensemble::from_weights(*arch, weights),
        InitReport {
            restarts: vec![0; k as usize],
            ..Default::default()
        },
    ))
}
