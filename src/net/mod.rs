//! The ensemble: K independent constant-width MLPs of one shape as one stack of
//! tensors. Layer l's weights are `[K, out, in]` and its biases `[K, out]`, applied
//! with batched matmul; member i is exactly the network a K = 1 ensemble builds for
//! the same seed and index i.
//!
//! Two forward layouts: `forward_shared` feeds every member the same inputs and
//! keeps activations feature-major, `[K, width, n]` (statistics over a dataset);
//! `forward_batched` feeds each member its own batch, `[K, B, width]` (training).
//! Both can hand every Linear layer's output to a probe without keeping them.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Normalisation after each hidden Linear layer (before the activation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    #[default]
    None,
    /// Per sample over the layer's units, with a learned scale and shift.
    Layer,
    /// Per unit over the batch in training (running statistics in evaluation).
    Batch,
}

impl Norm {
    pub fn name(&self) -> &'static str {
        match self {
            Norm::None => "none",
            Norm::Layer => "layer",
            Norm::Batch => "batch",
        }
    }
}

const NORM_EPS: f64 = 1e-5;
const BATCH_NORM_MOMENTUM: f64 = 0.1;

/// The shape shared by every member.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arch {
    pub input: usize,
    pub width: usize,
    /// Number of hidden layers; depth 0 is one Linear input → classes.
    pub depth: usize,
    pub classes: usize,
    /// Negative slope of the leaky ReLU (0 = ReLU). Configs hold it to [0, 1]:
    /// the hand-written training kernels take the activation's derivative from the
    /// sign of its output, which is the pre-activation's sign only for slopes >= 0.
    pub slope: f64,
    pub norm: Norm,
}

impl Arch {
    /// (out, in) of every Linear layer, first to last (depth + 1 of them).
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        let mut dims = Vec::with_capacity(self.depth + 1);
        let mut fan_in = self.input;
        for _ in 0..self.depth {
            dims.push((self.width, fan_in));
            fan_in = self.width;
        }
        dims.push((self.classes, fan_in));
        dims
    }

    /// Parameters of one member (weights, biases, normalisation scales and shifts).
    /// In closed form, saturating at `usize::MAX`: validation sizes shapes from a
    /// config before refusing the absurd ones, and must neither list a layer per
    /// unit of depth nor overflow doing it.
    pub fn parameters_per_member(&self) -> usize {
        let layer = |out: usize, input: usize| out.saturating_mul(input).saturating_add(out);
        let linear = if self.depth == 0 {
            layer(self.classes, self.input)
        } else {
            layer(self.width, self.input)
                .saturating_add(layer(self.width, self.width).saturating_mul(self.depth - 1))
                .saturating_add(layer(self.classes, self.width))
        };
        let norm = if self.norm == Norm::None {
            0
        } else {
            self.width.saturating_mul(self.depth).saturating_mul(2)
        };
        linear.saturating_add(norm)
    }
}

/// Whether a forward pass trains (batch normalisation uses the batch's
/// statistics and updates the running ones) or evaluates (it uses those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Training,
    Evaluation,
}

/// K networks of one shape.
pub struct Ensemble {
    pub arch: Arch,
    pub members: usize,
    /// `[K, out, in]` per Linear layer.
    pub weights: Vec<Tensor>,
    /// `[K, out]` per Linear layer.
    pub biases: Vec<Tensor>,
    /// `[K, width]` scale and shift of each hidden layer's normalisation (empty for none).
    pub norm_scale: Vec<Tensor>,
    pub norm_shift: Vec<Tensor>,
    /// `[K, width]` running statistics of batch norm.
    pub running_mean: Vec<Tensor>,
    pub running_var: Vec<Tensor>,
}

fn opts() -> (Kind, tch::Device) {
    (Kind::Float, tch::Device::Cpu)
}

impl Ensemble {
    /// An ensemble with the given weights, zero biases and identity normalisation.
    pub fn from_weights(arch: Arch, weights: Vec<Tensor>) -> Ensemble {
        let members = weights[0].size()[0] as usize;
        let dims = arch.layer_dims();
        assert_eq!(
            weights.len(),
            dims.len(),
            "one weight stack per Linear layer"
        );
        for (w, (o, i)) in weights.iter().zip(&dims) {
            assert_eq!(
                w.size(),
                vec![members as i64, *o as i64, *i as i64],
                "weight stack shape"
            );
        }
        let k = members as i64;
        let biases = dims
            .iter()
            .map(|(o, _)| Tensor::zeros([k, *o as i64], opts()))
            .collect();
        // Per hidden layer, `[K, width]` filled with `value`.
        let per_layer = |value: f64| {
            (0..arch.depth)
                .map(|_| Tensor::full([k, arch.width as i64], value, opts()))
                .collect::<Vec<_>>()
        };
        let (norm_scale, norm_shift) = if arch.norm == Norm::None {
            (Vec::new(), Vec::new())
        } else {
            (per_layer(1.0), per_layer(0.0))
        };
        let (running_mean, running_var) = if arch.norm == Norm::Batch {
            (per_layer(0.0), per_layer(1.0))
        } else {
            (Vec::new(), Vec::new())
        };
        Ensemble {
            arch,
            members,
            weights,
            biases,
            norm_scale,
            norm_shift,
            running_mean,
            running_var,
        }
    }

    /// The trainable tensors in a fixed order: per layer W then b, then the
    /// normalisation scales and shifts.
    pub fn parameters(&self) -> Vec<&Tensor> {
        let mut out = Vec::new();
        for (w, b) in self.weights.iter().zip(&self.biases) {
            out.push(w);
            out.push(b);
        }
        out.extend(self.norm_scale.iter());
        out.extend(self.norm_shift.iter());
        out
    }

    /// Every member's Linear layers `layers` as flat f32 vectors in storage order:
    /// per layer, the weights `[K, out, in]` and the biases `[K, out]`.
    pub fn flat_layers(&self, layers: std::ops::Range<usize>) -> Vec<(Vec<f32>, Vec<f32>)> {
        let flat =
            |t: &Tensor| Vec::<f32>::try_from(t.contiguous().reshape([-1])).expect("f32 tensor");
        layers
            .map(|l| (flat(&self.weights[l]), flat(&self.biases[l])))
            .collect()
    }

    /// All parameters copied into one flat `[P·K]` buffer (in `parameters()` order).
    pub fn to_flat(&self) -> Tensor {
        let parts: Vec<Tensor> = self
            .parameters()
            .iter()
            .map(|t| t.detach().reshape([-1]))
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// An ensemble whose parameters are views into `flat` (as made by `to_flat`), so
    /// that gradients of every parameter land in one buffer.
    pub fn view_flat(&self, flat: &Tensor) -> Ensemble {
        let mut offset = 0i64;
        let mut take = |like: &Tensor| {
            let n = like.numel() as i64;
            let v = flat.narrow(0, offset, n).view(like.size().as_slice());
            offset += n;
            v
        };
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for (w, b) in self.weights.iter().zip(&self.biases) {
            weights.push(take(w));
            biases.push(take(b));
        }
        let norm_scale = self.norm_scale.iter().map(&mut take).collect();
        let norm_shift = self.norm_shift.iter().map(&mut take).collect();
        Ensemble {
            arch: self.arch,
            members: self.members,
            weights,
            biases,
            norm_scale,
            norm_shift,
            running_mean: self
                .running_mean
                .iter()
                .map(|t| t.shallow_clone())
                .collect(),
            running_var: self.running_var.iter().map(|t| t.shallow_clone()).collect(),
        }
    }

    /// Trainable leaves that live inside `flat` (as made by `to_flat`): each parameter
    /// is its own leaf tensor (so autograd never builds slices of the whole buffer),
    /// yet an update of `flat` is an update of every parameter. Running statistics
    /// are private copies.
    pub fn leaves_in(&self, flat: &Tensor) -> Ensemble {
        let mut e = self.view_flat(flat);
        let leaf = |t: Tensor| t.detach().set_requires_grad(true);
        e.weights = e.weights.into_iter().map(leaf).collect();
        e.biases = e.biases.into_iter().map(leaf).collect();
        e.norm_scale = e.norm_scale.into_iter().map(leaf).collect();
        e.norm_shift = e.norm_shift.into_iter().map(leaf).collect();
        e.running_mean = self.running_mean.iter().map(|t| t.copy()).collect();
        e.running_var = self.running_var.iter().map(|t| t.copy()).collect();
        e
    }

    /// The same parameters (shared) with private copies of the running statistics.
    pub fn with_copied_buffers(&self) -> Ensemble {
        let mut e = self.view_flat(&self.to_flat());
        e.running_mean = self.running_mean.iter().map(|t| t.copy()).collect();
        e.running_var = self.running_var.iter().map(|t| t.copy()).collect();
        e
    }

    /// Member `i` alone, as a K = 1 ensemble (copies).
    pub fn member(&self, i: usize) -> Ensemble {
        let pick = |t: &Tensor| t.narrow(0, i as i64, 1).copy();
        Ensemble {
            arch: self.arch,
            members: 1,
            weights: self.weights.iter().map(pick).collect(),
            biases: self.biases.iter().map(pick).collect(),
            norm_scale: self.norm_scale.iter().map(pick).collect(),
            norm_shift: self.norm_shift.iter().map(pick).collect(),
            running_mean: self.running_mean.iter().map(pick).collect(),
            running_var: self.running_var.iter().map(pick).collect(),
        }
    }

    /// Leaky ReLU with this ensemble's slope.
    fn activation(&self, h: &Tensor) -> Tensor {
        if self.arch.slope == 0.0 {
            h.relu()
        } else {
            h.prelu(&Tensor::from_slice(&[self.arch.slope as f32]))
        }
    }

    /// Normalisation of hidden layer l's output; `feature_dim` is where the units are
    /// (1 for `[K, w, n]`, 2 for `[K, B, w]`) and `pass` selects batch statistics
    /// (training) or the running ones (evaluation).
    fn normalize(&self, l: usize, h: &Tensor, feature_dim: i64, pass: Pass) -> Tensor {
        let k = self.members as i64;
        let w = self.arch.width as i64;
        let shape: Vec<i64> = if feature_dim == 1 {
            vec![k, w, 1]
        } else {
            vec![k, 1, w]
        };
        let sample_dim = if feature_dim == 1 { 2 } else { 1 };
        let normalized = match self.arch.norm {
            Norm::None => return h.shallow_clone(),
            Norm::Layer => {
                let mean = h.mean_dim([feature_dim].as_slice(), true, Kind::Float);
                let var = h.var_dim([feature_dim].as_slice(), false, true);
                (h - mean) / (var + NORM_EPS).sqrt()
            }
            Norm::Batch => {
                if pass == Pass::Training {
                    let mean = h.mean_dim([sample_dim].as_slice(), true, Kind::Float);
                    let var = h.var_dim([sample_dim].as_slice(), false, true);
                    tch::no_grad(|| {
                        let n = h.size()[sample_dim as usize] as f64;
                        let unbiased = var.detach().view([k, w]) * (n / (n - 1.0).max(1.0));
                        let m = &self.running_mean[l];
                        let v = &self.running_var[l];
                        let new_m = m * (1.0 - BATCH_NORM_MOMENTUM)
                            + mean.detach().view([k, w]) * BATCH_NORM_MOMENTUM;
                        let new_v =
                            v * (1.0 - BATCH_NORM_MOMENTUM) + unbiased * BATCH_NORM_MOMENTUM;
                        m.shallow_clone().copy_(&new_m);
                        v.shallow_clone().copy_(&new_v);
                    });
                    (h - mean) / (var + NORM_EPS).sqrt()
                } else {
                    let mean = self.running_mean[l].view(shape.as_slice());
                    let var = self.running_var[l].view(shape.as_slice());
                    (h - mean) / (var + NORM_EPS).sqrt()
                }
            }
        };
        normalized * self.norm_scale[l].view(shape.as_slice())
            + self.norm_shift[l].view(shape.as_slice())
    }

    /// Every member on the same inputs `x: [n, in]`; returns logits `[K, classes, n]`.
    /// `probe(l, h)` sees each Linear layer's output `h: [K, out, n]` (l = 0..=depth).
    pub fn forward_shared(&self, x: &Tensor, probe: &mut dyn FnMut(usize, &Tensor)) -> Tensor {
        let k = self.members as i64;
        let n = x.size()[0];
        let (out0, in0) = self.arch.layer_dims()[0];
        // First layer as one matmul over all members: [K·out, in] × [in, n].
        let w0 = self.weights[0].reshape([k * out0 as i64, in0 as i64]);
        let b0 = self.biases[0].reshape([k * out0 as i64, 1]);
        let mut h = b0.addmm(&w0, &x.tr()).view([k, out0 as i64, n]); // [K, out, n]
        probe(0, &h);
        for l in 1..self.weights.len() {
            let normalized = self.normalize(l - 1, &h, 1, Pass::Evaluation);
            let a = self.activation(&normalized); // [K, width, n]
            h = self.biases[l]
                .unsqueeze(2)
                .baddbmm(&self.weights[l], &a, 1.0, 1.0); // [K, out, n]
            probe(l, &h);
        }
        h
    }

    /// Each member on its own batch `x: [K, B, in]`; returns logits `[K, B, classes]`.
    pub fn forward_batched(&self, x: &Tensor, pass: Pass) -> Tensor {
        let mut h =
            self.biases[0]
                .unsqueeze(1)
                .baddbmm(x, &self.weights[0].transpose(1, 2), 1.0, 1.0); // [K, B, out]
        for l in 1..self.weights.len() {
            let normalized = self.normalize(l - 1, &h, 2, pass);
            let a = self.activation(&normalized);
            h = self.biases[l]
                .unsqueeze(1)
                .baddbmm(&a, &self.weights[l].transpose(1, 2), 1.0, 1.0);
        }
        h
    }

    /// Per-member mean cross-entropy of `logits: [K, B, C]` against `targets: [K, B]`: `[K]`.
    pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
        let logp = logits.log_softmax(-1, Kind::Float);
        -logp
            .gather(2, &targets.unsqueeze(2), false)
            .squeeze_dim(2)
            .mean_dim([1i64].as_slice(), false, Kind::Float)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_in_closed_form_match_the_layers_and_saturate() {
        for (input, width, depth, classes, norm) in [
            (784, 10, 0, 10, Norm::None),
            (784, 10, 1, 10, Norm::None),
            (16, 6, 8, 10, Norm::Layer),
            (3072, 200, 500, 10, Norm::Batch),
        ] {
            let arch = Arch {
                input,
                width,
                depth,
                classes,
                slope: 0.0,
                norm,
            };
            let linear: usize = arch.layer_dims().iter().map(|(o, i)| o * i + o).sum();
            let norms = if norm == Norm::None {
                0
            } else {
                2 * width * depth
            };
            assert_eq!(arch.parameters_per_member(), linear + norms, "{arch:?}");
        }
        let absurd = Arch {
            input: 784,
            width: usize::MAX / 2,
            depth: usize::MAX,
            classes: 10,
            slope: 0.0,
            norm: Norm::None,
        };
        assert_eq!(absurd.parameters_per_member(), usize::MAX);
    }
}
