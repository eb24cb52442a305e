//! Initialisers: a registry of named schemes, written in YAML exactly as on the
//! command line (`he_normal`, `orthogonal`, `metainit`, ...), optionally with
//! hyper-parameters (`{name: metainit, steps: 200}`). Each fills whole stacks of
//! weight matrices with tensor ops; every member of an ensemble draws from its own
//! random stream, so member i is the same network whatever the ensemble's size.

pub mod dist;
pub mod lsuv;
pub mod metainit;
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

    /// Checks the hyper-parameters: finite and in range, each error naming the key.
    /// Called when an initialiser is read, so that a bad value stops a config
    /// before any of its units runs.
    pub fn check_params(&self) -> Result<()> {
        let checked = match self {
            Initializer::Orthogonal(p) => crate::config::check::positive("gain", p.gain),
            Initializer::MetaInit(p) => p.validate(),
            Initializer::Lsuv(p) => p.validate(),
            _ => Ok(()),
        };
        checked.map_err(|e| anyhow::anyhow!("initialiser `{}`: {e:#}", self.name()))
    }

    /// Checks that the scheme can build this shape (GSM's even sizes, MetaInit and
    /// LSUV without normalisation layers). The hyper-parameters are checked when
    /// read ([`Initializer::check_params`]), not here: code may ask for what a
    /// config may not (the benchmark times MetaInit with no steps).
    pub fn check_arch(&self, arch: &Arch) -> Result<()> {
        if matches!(self, Initializer::Gsm) {
            // The layers are input→width, width→width, width→classes (input→classes
            // at depth 0): checked from the sizes, without listing every layer.
            let mut sizes = vec![arch.input, arch.classes];
            if arch.depth > 0 {
                sizes.push(arch.width);
            }
            if let Some(odd) = sizes.iter().find(|&&n| n % 2 != 0) {
                bail!(
                    "gsm needs even sizes (its 2×2 block structure), but a layer has a size of {odd}: use an even width (and even input features and classes)"
                );
            }
        }
        if matches!(self, Initializer::MetaInit(_) | Initializer::Lsuv(_))
            && arch.norm != crate::net::Norm::None
        {
            bail!(
                "{} is defined here for networks without normalisation layers: use `norm: none` (got `norm: {}`)",
                self.name(),
                arch.norm.name()
            );
        }
        Ok(())
    }

    /// Bytes that initialising one member needs beyond its weights, as the
    /// experiments' ensemble sizing counts them: MetaInit's random batches and its
    /// third-order graph, LSUV's batch of training inputs, ZerO's Hadamard matrix
    /// (shared by the members, but one member alone needs it too), two copies of
    /// the weights otherwise. In f64 so that an absurd shape saturates instead of
    /// overflowing.
    pub fn init_bytes_per_member(&self, arch: &Arch) -> f64 {
        let params = arch.parameters_per_member() as f64 * 4.0;
        let (input, width, depth) = (arch.input as f64, arch.width as f64, arch.depth as f64);
        match self {
            Initializer::MetaInit(m) => {
                24.0 * m.batch as f64 * (input + width * (depth + 1.0)) * 4.0 + 8.0 * params
            }
            Initializer::Lsuv(l) => 4.0 * l.batch as f64 * input * 4.0,
            Initializer::Zero | Initializer::ZeroStar => {
                // An expanding layer (out > in) is built from a Hadamard matrix of the
                // next power of two of out, and two products of its size. Only the
                // first and last layers can expand (ZerO*'s first is random).
                let zero_first = matches!(self, Initializer::Zero);
                let layers = match arch.depth {
                    0 if zero_first => vec![(arch.classes, arch.input)],
                    0 => Vec::new(),
                    _ if zero_first => vec![(arch.width, arch.input), (arch.classes, arch.width)],
                    _ => vec![(arch.classes, arch.width)],
                };
                let order = layers
                    .iter()
                    .filter(|(out, input)| out > input)
                    .map(|&(out, _)| (out as f64).log2().ceil().exp2())
                    .fold(0.0, f64::max);
                2.0 * params + 3.0 * 4.0 * order * order
            }
            _ => 2.0 * params,
        }
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
        let init = Initializer::from_parts(&name, params)
            .map_err(|e| D::Error::custom(format!("{e:#}")))?;
        init.check_params()
            .map_err(|e| D::Error::custom(format!("{e:#}")))?;
        Ok(init)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Norm;

    fn arch(input: usize, width: usize, depth: usize, norm: Norm) -> Arch {
        Arch {
            input,
            width,
            depth,
            classes: 10,
            slope: 0.0,
            norm,
        }
    }

    #[test]
    fn bad_hyper_parameters_are_refused_when_read_naming_the_key() {
        let err = |yaml: &str| match serde_yaml::from_str::<Initializer>(yaml) {
            Ok(init) => panic!("{yaml} was accepted as {init:?}"),
            Err(e) => e.to_string(),
        };
        for (yaml, expected) in [
            (
                "{name: orthogonal, gain: .nan}",
                "initialiser `orthogonal`: `gain` must be a finite number > 0, got NaN",
            ),
            ("{orthogonal: {gain: 0}}", "`gain`"),
            ("{name: metainit, lr: -.inf}", "`lr`"),
            ("{name: metainit, momentum: -0.1}", "`momentum`"),
            ("{name: metainit, eps: .nan}", "`eps`"),
            ("{name: metainit, batch: 0}", "`batch` must be at least 1"),
            ("{name: metainit, steps: 0}", "`steps` must be at least 1"),
            (
                "{name: metainit, max_restarts: 1000000}",
                "`max_restarts` must be at most 1000",
            ),
            ("{name: lsuv, batch: 1}", "`batch` must be at least 2"),
            ("{name: lsuv, tolerance: .inf}", "`tolerance`"),
            ("{name: lsuv, max_iterations: 0}", "`max_iterations`"),
        ] {
            let e = err(yaml);
            assert!(e.contains(expected), "{yaml}: {e}");
        }
        // the defaults and ordinary values are fine
        for yaml in [
            "orthogonal",
            "metainit",
            "lsuv",
            "{name: metainit, momentum: 0, steps: 1}",
        ] {
            serde_yaml::from_str::<Initializer>(yaml).unwrap();
        }
    }

    #[test]
    fn shape_checks_need_no_list_of_layers() {
        // GSM's parity from the sizes: the same verdict as checking every layer.
        for (input, width, depth) in [(16, 4, 0), (16, 4, 3), (16, 5, 0), (16, 5, 2), (15, 4, 2)] {
            let a = arch(input, width, depth, Norm::None);
            let every_layer_even = a.layer_dims().iter().all(|(o, i)| o % 2 == 0 && i % 2 == 0);
            assert_eq!(
                Initializer::Gsm.check_arch(&a).is_ok(),
                every_layer_even,
                "{a:?}"
            );
        }
        // an absurd depth is checked at once (no layer list of that length)
        let deep = arch(16, 4, usize::MAX, Norm::None);
        Initializer::Gsm.check_arch(&deep).unwrap();
        assert!(Initializer::He(WeightDist::Normal).init_bytes_per_member(&deep) > 1e18);
        // data- and gradient-driven schemes refuse normalisation layers
        let e = Initializer::Lsuv(LsuvParams::default())
            .check_arch(&arch(16, 4, 2, Norm::Layer))
            .unwrap_err()
            .to_string();
        assert!(e.contains("norm: none"), "{e}");
    }

    #[test]
    fn code_may_still_run_metainit_without_steps() {
        // The benchmark times MetaInit's fixed cost with `steps: 0`, which a config
        // may not ask for; only shapes are checked when an ensemble is built.
        let p = MetaInitParams {
            steps: 0,
            ..Default::default()
        };
        let a = arch(8, 4, 2, Norm::None);
        let mut streams = member_streams(1, "no-steps", 0, 2);
        let (net, report) = initialize(&Initializer::MetaInit(p), &a, &mut streams, None).unwrap();
        assert_eq!(net.members, 2);
        assert_eq!(report.restarts.len(), 2);
    }

    #[test]
    fn zero_counts_its_hadamard_matrix() {
        // width 1000 on 16 inputs expands into a Hadamard matrix of order 1024
        let a = arch(16, 1000, 2, Norm::None);
        let params = a.parameters_per_member() as f64 * 4.0;
        let zero = Initializer::Zero.init_bytes_per_member(&a);
        assert_eq!(zero, 2.0 * params + 12.0 * 1024.0 * 1024.0);
        // ZerO*'s first layer is random; only the last (10 <= 1000) could expand
        assert_eq!(
            Initializer::ZeroStar.init_bytes_per_member(&a),
            2.0 * params
        );
    }
}
