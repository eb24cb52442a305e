//! Initialisers: a registry of named schemes, written in YAML exactly as on the
//! command line (`he_normal`, `orthogonal`, `metainit`, ...), optionally with
//! hyper-parameters (`{name: metainit, steps: 200}`). Each fills whole stacks of
//! weight matrices with tensor ops; every member of an ensemble draws from its own
//! random stream, so member i is the same network whatever the ensemble's size.

pub mod dist;
pub mod lsuv;
pub mod metainit;
pub mod metainit_kernel;
pub mod schemes;

use crate::net::{Arch, Ensemble};
use crate::seed::Stream;
use anyhow::{Result, bail};
use dist::WeightDist;
use serde::{Deserialize, Serialize};
use tch::Tensor;

pub use lsuv::LsuvParams;
pub use metainit::MetaInitParams;

/// Orthogonal initialisation's options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrthogonalParams {
    /// Gain of every matrix (√2, the ReLU gain, by default).
    #[serde(default = "default_gain")]
    pub gain: f64,
}

fn default_gain() -> f64 {
    std::f64::consts::SQRT_2
}

impl Default for OrthogonalParams {
    fn default() -> Self {
        OrthogonalParams {
            gain: default_gain(),
        }
    }
}

/// Every initialiser initlab knows.
#[derive(Debug, Clone, PartialEq)]
pub enum Initializer {
    /// He: iid with variance 2/(fan_in (1 + a²)), a the leaky-ReLU slope.
    He(WeightDist),
    /// Glorot normal: std √(2/(fan_in + fan_out)).
    GlorotNormal,
    /// LeCun normal: std √(1/fan_in).
    LecunNormal,
    /// Saxe et al.'s orthogonal matrices (QR with sign correction) times a gain.
    Orthogonal(OrthogonalParams),
    /// Burkholz & Dubatovka's GSM: [[A, −A], [−A, A]] blocks.
    Gsm,
    /// Zhao et al.'s ZerO: identities, Hadamard for expanding layers.
    Zero,
    /// ZerO with a random normal first layer (std √(1/fan_in)).
    ZeroStar,
    /// Every matrix the rectangular identity.
    Identity,
    /// Dauphin & Schoenholz's MetaInit, from a He-normal start.
    MetaInit(MetaInitParams),
    /// Mishkin & Matas's LSUV: orthogonal start, then unit output variance per layer on data.
    Lsuv(LsuvParams),
}

/// The names, as in YAML and on the command line.
pub const NAMES: [&str; 12] = [
    "he_normal",
    "he_uniform",
    "he_bernoulli",
    "glorot_normal",
    "lecun_normal",
    "orthogonal",
    "gsm",
    "zero",
    "zero_star",
    "identity",
    "metainit",
    "lsuv",
];

impl Initializer {
    pub fn name(&self) -> &'static str {
        match self {
            Initializer::He(WeightDist::Normal) => "he_normal",
            Initializer::He(WeightDist::Uniform) => "he_uniform",
            Initializer::He(WeightDist::Bernoulli) => "he_bernoulli",
            Initializer::GlorotNormal => "glorot_normal",
            Initializer::LecunNormal => "lecun_normal",
            Initializer::Orthogonal(_) => "orthogonal",
            Initializer::Gsm => "gsm",
            Initializer::Zero => "zero",
            Initializer::ZeroStar => "zero_star",
            Initializer::Identity => "identity",
            Initializer::MetaInit(_) => "metainit",
            Initializer::Lsuv(_) => "lsuv",
        }
    }

    /// Builds an initialiser from its name and a mapping of hyper-parameters.
    pub fn from_parts(name: &str, params: serde_yaml::Mapping) -> Result<Self> {
        let none = |init: Initializer| -> Result<Initializer> {
            if let Some(k) = params.keys().next() {
                bail!(
                    "initialiser `{name}` has no hyper-parameters, got `{}`",
                    k.as_str().unwrap_or("?")
                );
            }
            Ok(init)
        };
        let value = serde_yaml::Value::Mapping(params.clone());
        let typed = |what: &str| -> String { format!("hyper-parameters of `{what}`") };
        Ok(match name {
            "he_normal" => none(Initializer::He(WeightDist::Normal))?,
            "he_uniform" => none(Initializer::He(WeightDist::Uniform))?,
            "he_bernoulli" => none(Initializer::He(WeightDist::Bernoulli))?,
            "glorot_normal" => none(Initializer::GlorotNormal)?,
            "lecun_normal" => none(Initializer::LecunNormal)?,
            "gsm" => none(Initializer::Gsm)?,
            "zero" => none(Initializer::Zero)?,
            "zero_star" => none(Initializer::ZeroStar)?,
            "identity" => none(Initializer::Identity)?,
            "orthogonal" => Initializer::Orthogonal(
                serde_path_to_error::deserialize(value)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", typed(name)))?,
            ),
            "metainit" => Initializer::MetaInit(
                serde_path_to_error::deserialize(value)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", typed(name)))?,
            ),
            "lsuv" => Initializer::Lsuv(
                serde_path_to_error::deserialize(value)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", typed(name)))?,
            ),
            other => bail!("unknown initialiser `{other}`; known: {}", NAMES.join(", ")),
        })
    }

    /// Hyper-parameters that differ from nothing (for YAML round trips).
    fn params_value(&self) -> Option<serde_yaml::Value> {
        match self {
            Initializer::Orthogonal(p) => Some(serde_yaml::to_value(p).ok()?),
            Initializer::MetaInit(p) => Some(serde_yaml::to_value(p).ok()?),
            Initializer::Lsuv(p) => Some(serde_yaml::to_value(p).ok()?),
            _ => None,
        }
    }

    /// The kurtosis of the weights' distribution where the scheme is iid (He variants).
    pub fn weight_kurtosis(&self) -> Option<f64> {
        match self {
            Initializer::He(d) => Some(d.kurtosis()),
            Initializer::GlorotNormal | Initializer::LecunNormal => Some(3.0),
            _ => None,
        }
    }

    /// The variance of a weight of a `fan_out × fan_in` layer, for iid schemes.
    pub fn weight_variance(&self, fan_in: usize, fan_out: usize, slope: f64) -> Option<f64> {
        match self {
            Initializer::He(_) => Some(2.0 / (fan_in as f64 * (1.0 + slope * slope))),
            Initializer::GlorotNormal => Some(2.0 / (fan_in + fan_out) as f64),
            Initializer::LecunNormal => Some(1.0 / fan_in as f64),
            _ => None,
        }
    }

    /// Whether it needs training inputs (data-dependent initialisation).
    pub fn needs_data(&self) -> bool {
        matches!(self, Initializer::Lsuv(_))
    }

    /// Checks that the scheme can build this shape (GSM's even sizes, ...).
    pub fn check_arch(&self, arch: &Arch) -> Result<()> {
        if matches!(self, Initializer::Gsm) {
            for (o, i) in arch.layer_dims() {
                if o % 2 != 0 || i % 2 != 0 {
                    bail!(
                        "gsm needs even sizes (its 2×2 block structure), but a layer is {o}×{i}: use an even width (and even input features and classes)"
                    );
                }
            }
        }
        Ok(())
    }
}

impl Serialize for Initializer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.params_value() {
            None => s.serialize_str(self.name()),
            Some(serde_yaml::Value::Mapping(m)) => {
                let mut out = serde_yaml::Mapping::new();
                out.insert("name".into(), self.name().into());
                for (key, value) in m {
                    out.insert(key, value);
                }
                out.serialize(s)
            }
            Some(other) => other.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Initializer {
    /// `he_normal`, `{name: metainit, steps: 200}` or `{metainit: {steps: 200}}`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_yaml::Value::deserialize(d)?;
        let (name, params) = match value {
            serde_yaml::Value::String(s) => (s, serde_yaml::Mapping::new()),
            serde_yaml::Value::Mapping(mut m) => match m.remove("name") {
                Some(serde_yaml::Value::String(name)) => (name, m),
                Some(_) => {
                    return Err(D::Error::custom("an initialiser's `name` must be a string"));
                }
                None if m.len() == 1 => {
                    let (k, v) = m.into_iter().next().expect("one entry");
                    let name = k
                        .as_str()
                        .ok_or_else(|| D::Error::custom("initialiser name must be a string"))?
                        .to_string();
                    let params = match v {
                        serde_yaml::Value::Mapping(p) => p,
                        serde_yaml::Value::Null => serde_yaml::Mapping::new(),
                        _ => {
                            return Err(D::Error::custom(format!(
                                "hyper-parameters of `{name}` must be a mapping"
                            )));
                        }
                    };
                    (name, params)
                }
                None => {
                    return Err(D::Error::custom(
                        "an initialiser is a name (he_normal) or a mapping with `name:` and its hyper-parameters",
                    ));
                }
            },
            other => {
                return Err(D::Error::custom(format!(
                    "an initialiser is a name like he_normal, found {}",
                    crate::config::describe(&other)
                )));
            }
        };
        Initializer::from_parts(&name, params).map_err(|e| D::Error::custom(format!("{e:#}")))
    }
}

/// What an initialiser reports per member (MetaInit's quotient, restarts, LSUV's passes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InitReport {
    /// Per member: how many times it was restarted from a fresh start.
    pub restarts: Vec<usize>,
    /// Per member: the gradient quotient before and after MetaInit.
    pub gq_start: Vec<f64>,
    pub gq_end: Vec<f64>,
}

/// One random stream per member, for members `first..first + count` of the
/// network family named `key` under the run's `seed`.
pub fn member_streams(seed: u64, key: &str, first: usize, count: usize) -> Vec<Stream> {
    (first..first + count)
        .map(|i| crate::seed::stream(seed, &[key, "member", &i.to_string()]))
        .collect()
}

/// Builds an ensemble of `streams.len()` members. `data` is a pool of training
/// inputs `[N, in]` for data-dependent schemes.
pub fn initialize(
    init: &Initializer,
    arch: &Arch,
    streams: &mut [Stream],
    data: Option<&Tensor>,
) -> Result<(Ensemble, InitReport)> {
    init.check_arch(arch)?;
    let k = streams.len();
    match init {
        // MetaInit differentiates to third order: gradients must be on.
        Initializer::MetaInit(p) => tch::with_grad(|| metainit::metainit(p, arch, streams)),
        Initializer::Lsuv(p) => {
            let data = data.ok_or_else(|| anyhow::anyhow!("lsuv needs training data"))?;
            tch::no_grad(|| lsuv::lsuv(p, arch, streams, data))
        }
        other => {
            let weights = tch::no_grad(|| schemes::weights(other, arch, streams))?;
            let report = InitReport {
                restarts: vec![0; k],
                ..Default::default()
            };
            Ok((Ensemble::from_weights(*arch, weights), report))
        }
    }
}
