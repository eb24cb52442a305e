//! Initialisers: a registry of named schemes, written in YAML exactly as on the
//! command line (`he_normal`, `orthogonal`, `metainit`, ...), optionally with
//! hyper-parameters (`{name: metainit, steps: 200}`, `{name: he_gennorm, beta: 1}`).
//! Each fills whole stacks of weight matrices with tensor ops; every member of an
//! ensemble draws from its own random stream, so member i is the same network
//! whatever the ensemble's size.

pub mod dist;
pub mod lsuv;
pub mod metainit;
pub mod schemes;

use crate::net::{Arch, Ensemble};
use crate::seed::{Key, Stream};
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

/// He generalised normal's options: the shape β, which sets the weights'
/// kurtosis κ_w = Γ(5/β)Γ(1/β)/Γ(3/β)² (no default: the shape is the point).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenNormParams {
    pub beta: f64,
}

/// The smallest and largest shapes `he_gennorm` takes, and why.
const GENNORM_BETA: (f64, f64) = (0.1, 100.0);
const GENNORM_BETA_WHY: &str = "below 0.1 the weights' kurtosis passes 10^6 and a few weights of a \
     layer carry all of its variance; at 100 the law is already uniform to 0.1% in kurtosis \
     (κ_w 1.8011; use he_uniform for the limit)";

/// He sparse's options: the probability p that a weight is kept (κ_w = 3/p).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseParams {
    pub p: f64,
}

/// Every initialiser initlab knows.
#[derive(Debug, Clone, PartialEq)]
pub enum Initializer {
    /// He: iid with variance 2/(fan_in (1 + a²)), a the leaky-ReLU slope; the
    /// law's kurtosis is fixed (normal, uniform, Bernoulli) or set by a
    /// hyper-parameter (generalised normal, sparse Gaussian).
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

snake_case_names! {
    /// The initialisers' names, in the order of docs/configs.md, which the
    /// figures' legends follow.
    pub enum InitName {
        HeNormal,
        HeUniform,
        HeBernoulli,
        HeGennorm,
        HeSparse,
        GlorotNormal,
        LecunNormal,
        Orthogonal,
        Gsm,
        Metainit,
        Lsuv,
        Zero,
        ZeroStar,
        Identity,
    }
}

impl InitName {
    /// The name as figures and the report print it.
    pub fn label(self) -> &'static str {
        match self {
            InitName::HeNormal => "He normal",
            InitName::HeUniform => "He uniform",
            InitName::HeBernoulli => "He Bernoulli",
            InitName::HeGennorm => "He generalised normal",
            InitName::HeSparse => "He sparse",
            InitName::GlorotNormal => "Glorot normal",
            InitName::LecunNormal => "LeCun normal",
            InitName::Orthogonal => "orthogonal",
            InitName::Gsm => "GSM",
            InitName::Metainit => "MetaInit",
            InitName::Lsuv => "LSUV",
            InitName::Zero => "ZerO",
            InitName::ZeroStar => "ZerO*",
            InitName::Identity => "identity",
        }
    }

    /// Whether the weights' kurtosis κ_w is a hyper-parameter, so that runs
    /// under one name differ by κ_w.
    pub fn kurtosis_is_a_hyper_parameter(self) -> bool {
        matches!(self, InitName::HeGennorm | InitName::HeSparse)
    }
}

impl Initializer {
    pub fn id(&self) -> InitName {
        match self {
            Initializer::He(WeightDist::Normal) => InitName::HeNormal,
            Initializer::He(WeightDist::Uniform) => InitName::HeUniform,
            Initializer::He(WeightDist::Bernoulli) => InitName::HeBernoulli,
            Initializer::He(WeightDist::GenNormal { .. }) => InitName::HeGennorm,
            Initializer::He(WeightDist::Sparse { .. }) => InitName::HeSparse,
            Initializer::GlorotNormal => InitName::GlorotNormal,
            Initializer::LecunNormal => InitName::LecunNormal,
            Initializer::Orthogonal(_) => InitName::Orthogonal,
            Initializer::Gsm => InitName::Gsm,
            Initializer::Zero => InitName::Zero,
            Initializer::ZeroStar => InitName::ZeroStar,
            Initializer::Identity => InitName::Identity,
            Initializer::MetaInit(_) => InitName::Metainit,
            Initializer::Lsuv(_) => InitName::Lsuv,
        }
    }

    pub fn name(&self) -> &'static str {
        self.id().name()
    }

    /// Writes the initialiser into a key: its name as the field `init`, then each
    /// hyper-parameter as `init.<name>` in a fixed order, so that a network's
    /// seed names every choice that shapes it. The parameters are taken apart
    /// whole, so a new hyper-parameter does not compile until it is written here.
    pub fn write_key(&self, key: Key) -> Result<Key> {
        let key = key.text("init", self.name());
        Ok(match *self {
            Initializer::Orthogonal(OrthogonalParams { gain }) => key.float("init.gain", gain)?,
            Initializer::MetaInit(MetaInitParams {
                steps,
                batch,
                lr,
                momentum,
                eps,
                max_restarts,
            }) => key
                .uint("init.steps", steps as u64)
                .uint("init.batch", batch as u64)
                .float("init.lr", lr)?
                .float("init.momentum", momentum)?
                .float("init.eps", eps)?
                .uint("init.max_restarts", max_restarts as u64),
            Initializer::Lsuv(LsuvParams {
                tolerance,
                max_iterations,
                batch,
            }) => key
                .float("init.tolerance", tolerance)?
                .uint("init.max_iterations", max_iterations as u64)
                .uint("init.batch", batch as u64),
            Initializer::He(_)
            | Initializer::GlorotNormal
            | Initializer::LecunNormal
            | Initializer::Gsm
            | Initializer::Zero
            | Initializer::ZeroStar
            | Initializer::Identity => key,
        })
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
        // The one hyper-parameter a family cannot do without: its absence is
        // named with the fix, before serde's terser "missing field".
        let required = |key: &str, meaning: &str, example: &str| -> Result<()> {
            if !params.contains_key(key) {
                bail!(
                    "initialiser `{name}` needs `{key}` ({meaning}): write it as `{{name: {name}, {key}: {example}}}`"
                );
            }
            Ok(())
        };
        let Ok(id) = name.parse::<InitName>() else {
            bail!(
                "unknown initialiser `{name}`; known: {}",
                InitName::names().join(", ")
            );
        };
        Ok(match id {
            InitName::HeNormal => none(Initializer::He(WeightDist::Normal))?,
            InitName::HeUniform => none(Initializer::He(WeightDist::Uniform))?,
            InitName::HeBernoulli => none(Initializer::He(WeightDist::Bernoulli))?,
            InitName::HeGennorm => {
                required(
                    "beta",
                    "the shape: 2 normal, 1 Laplace, larger towards uniform",
                    "1.0",
                )?;
                let p: GenNormParams = serde_path_to_error::deserialize(value)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", typed(name)))?;
                Initializer::He(WeightDist::GenNormal { beta: p.beta })
            }
            InitName::HeSparse => {
                required("p", "the probability that a weight is kept", "0.5")?;
                let p: SparseParams = serde_path_to_error::deserialize(value)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", typed(name)))?;
                Initializer::He(WeightDist::Sparse { p: p.p })
            }
            InitName::GlorotNormal => none(Initializer::GlorotNormal)?,
            InitName::LecunNormal => none(Initializer::LecunNormal)?,
            InitName::Gsm => none(Initializer::Gsm)?,
            InitName::Zero => none(Initializer::Zero)?,
            InitName::ZeroStar => none(Initializer::ZeroStar)?,
            InitName::Identity => none(Initializer::Identity)?,
            InitName::Orthogonal => Initializer::Orthogonal(
                serde_path_to_error::deserialize(value)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", typed(name)))?,
            ),
            InitName::Metainit => Initializer::MetaInit(
                serde_path_to_error::deserialize(value)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", typed(name)))?,
            ),
            InitName::Lsuv => Initializer::Lsuv(
                serde_path_to_error::deserialize(value)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", typed(name)))?,
            ),
        })
    }

    /// Hyper-parameters that differ from nothing (for YAML round trips).
    fn params_value(&self) -> Option<serde_yaml::Value> {
        match self {
            Initializer::Orthogonal(p) => Some(serde_yaml::to_value(p).ok()?),
            Initializer::MetaInit(p) => Some(serde_yaml::to_value(p).ok()?),
            Initializer::Lsuv(p) => Some(serde_yaml::to_value(p).ok()?),
            Initializer::He(WeightDist::GenNormal { beta }) => {
                Some(serde_yaml::to_value(GenNormParams { beta: *beta }).ok()?)
            }
            Initializer::He(WeightDist::Sparse { p }) => {
                Some(serde_yaml::to_value(SparseParams { p: *p }).ok()?)
            }
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
            Initializer::He(WeightDist::GenNormal { beta }) => {
                let (lo, hi) = GENNORM_BETA;
                crate::config::check::within("beta", *beta, lo, hi)
                    .map_err(|e| anyhow::anyhow!("{e} ({GENNORM_BETA_WHY})"))
            }
            Initializer::He(WeightDist::Sparse { p }) => {
                crate::config::check::within_open_below("p", *p, 0.0, 1.0).map_err(|e| {
                    anyhow::anyhow!(
                        "{e} (the probability that a weight is kept: 0 would zero every weight, 1 keeps all, the normal law)"
                    )
                })
            }
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
/// network family `family` under the run's `seed`: member i's stream is that of
/// the family's key with the field ("member", i).
pub fn member_streams(seed: u64, family: &Key, first: usize, count: usize) -> Vec<Stream> {
    (first..first + count)
        .map(|i| family.clone().uint("member", i as u64).stream(seed))
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
            (
                "he_gennorm",
                "initialiser `he_gennorm` needs `beta` (the shape: 2 normal, 1 Laplace, larger towards uniform): write it as `{name: he_gennorm, beta: 1.0}`",
            ),
            ("{he_gennorm: {}}", "needs `beta`"),
            (
                "{name: he_gennorm, beta: 0.05}",
                "initialiser `he_gennorm`: `beta` must be a finite number in [0.1, 100], got 0.05 (below 0.1",
            ),
            (
                "{name: he_gennorm, beta: 101}",
                "`beta` must be a finite number in [0.1, 100], got 101",
            ),
            ("{name: he_gennorm, beta: -1}", "got -1"),
            (
                "{name: he_gennorm, beta: .nan}",
                "`beta` must be a finite number in [0.1, 100], got NaN",
            ),
            ("{name: he_gennorm, beta: .inf}", "got inf"),
            (
                "{name: he_gennorm, beta: one}",
                "hyper-parameters of `he_gennorm`",
            ),
            ("{name: he_gennorm, beta: 1, p: 0.5}", "unknown field `p`"),
            (
                "{name: he_sparse}",
                "initialiser `he_sparse` needs `p` (the probability that a weight is kept): write it as `{name: he_sparse, p: 0.5}`",
            ),
            (
                "{name: he_sparse, p: 0}",
                "initialiser `he_sparse`: `p` must be a finite number in (0, 1], got 0 (the probability that a weight is kept",
            ),
            (
                "{name: he_sparse, p: 1.5}",
                "`p` must be a finite number in (0, 1], got 1.5",
            ),
            ("{name: he_sparse, p: -0.1}", "got -0.1"),
            (
                "{name: he_sparse, p: .nan}",
                "`p` must be a finite number in (0, 1], got NaN",
            ),
            ("{name: he_sparse, p: 0.5, beta: 2}", "unknown field `beta`"),
            (
                "{name: he_normal, beta: 2}",
                "`he_normal` has no hyper-parameters, got `beta`",
            ),
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
            "{name: he_gennorm, beta: 0.1}",
            "{he_gennorm: {beta: 100}}",
            "{name: he_sparse, p: 1}",
            "{name: he_sparse, p: 1.0e-3}",
        ] {
            serde_yaml::from_str::<Initializer>(yaml).unwrap();
        }
    }

    #[test]
    fn the_kurtosis_knobs_round_trip_and_set_kappa_w() {
        for (yaml, name, kappa) in [
            ("{name: he_gennorm, beta: 2}", "he_gennorm", 3.0),
            ("{name: he_gennorm, beta: 1}", "he_gennorm", 6.0),
            // Γ(10)Γ(2)/Γ(6)² = 9!/(5!)² = 362880/14400
            ("{name: he_gennorm, beta: 0.5}", "he_gennorm", 25.2),
            ("{name: he_sparse, p: 0.1}", "he_sparse", 30.0),
            ("{he_sparse: {p: 1}}", "he_sparse", 3.0),
        ] {
            let init: Initializer = serde_yaml::from_str(yaml).unwrap();
            assert_eq!(init.name(), name);
            let kw = init.weight_kurtosis().unwrap();
            assert!(
                (kw - kappa).abs() < 1e-12 * kappa,
                "{yaml}: κ_w {kw}, expected {kappa}"
            );
            // He's variance whatever the law
            assert_eq!(
                init.weight_variance(50, 7, 0.5),
                Initializer::He(WeightDist::Normal).weight_variance(50, 7, 0.5)
            );
            // the hyper-parameter is written back, so run directories and the
            // networks' random streams tell the values apart
            let text = serde_yaml::to_string(&init).unwrap();
            assert_eq!(
                serde_yaml::from_str::<Initializer>(&text).unwrap(),
                init,
                "{text}"
            );
        }
        let key = |yaml: &str| {
            serde_yaml::to_string(&serde_yaml::from_str::<Initializer>(yaml).unwrap()).unwrap()
        };
        assert_ne!(
            key("{name: he_gennorm, beta: 1}"),
            key("{name: he_gennorm, beta: 1.5}")
        );
        assert_ne!(
            key("{name: he_sparse, p: 0.5}"),
            key("{name: he_sparse, p: 0.25}")
        );
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
        let mut streams = member_streams(1, &Key::new("no-steps"), 0, 2);
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
