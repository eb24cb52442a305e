//! The zero-mean symmetric distributions that weights are drawn from, each scaled
//! to unit variance and known by its kurtosis (normal 3, uniform 1.8, Bernoulli 1).

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WeightDist {
    #[default]
    Normal,
    /// Uniform on [−√3, √3].
    Uniform,
    /// Symmetric Bernoulli: ±1 with probability ½ each.
    Bernoulli,
}

impl WeightDist {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "normal" | "gaussian" => WeightDist::Normal,
            "uniform" => WeightDist::Uniform,
            "bernoulli" | "rademacher" => WeightDist::Bernoulli,
            other => anyhow::bail!(
                "unknown weight distribution `{other}`; use normal, uniform or bernoulli"
            ),
        })
    }

    /// E[w⁴]/E[w²]².
    pub fn kurtosis(&self) -> f64 {
        match self {
            WeightDist::Normal => 3.0,
            WeightDist::Uniform => 1.8,
            WeightDist::Bernoulli => 1.0,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            WeightDist::Normal => "normal",
            WeightDist::Uniform => "uniform",
            WeightDist::Bernoulli => "bernoulli",
        }
    }

    /// Fills `out` with iid unit-variance draws.
    pub fn fill<R: Rng>(&self, rng: &mut R, out: &mut [f32]) {
        match self {
            WeightDist::Normal => {
                for v in out.iter_mut() {
                    *v = StandardNormal.sample(rng);
                }
            }
            WeightDist::Uniform => {
                let half_width = 3f32.sqrt();
                for v in out.iter_mut() {
                    *v = rng.random_range(-half_width..half_width);
                }
            }
            WeightDist::Bernoulli => {
                // 64 signs per random word
                for chunk in out.chunks_mut(64) {
                    let bits: u64 = rng.random();
                    for (i, v) in chunk.iter_mut().enumerate() {
                        *v = if (bits >> i) & 1 == 1 { 1.0 } else { -1.0 };
                    }
                }
            }
        }
    }
}
