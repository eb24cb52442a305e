//! The configs of each reproduction scale, embedded in the binary (the same
//! files as under configs/), for `initlab reproduce` and the paper-scale bench.

use crate::config::Config;
use crate::data::Normalization;
use anyhow::{Context as _, Result};

/// (file name, text) of the configs of each scale, in the order they run.
pub const QUICK: &[(&str, &str)] = &[
    ("theory.yaml", include_str!("../configs/quick/theory.yaml")),
    (
        "kurtosis-mc.yaml",
        include_str!("../configs/quick/kurtosis-mc.yaml"),
    ),
    (
        "input-stats.yaml",
        include_str!("../configs/quick/input-stats.yaml"),
    ),
    ("fig2.yaml", include_str!("../configs/quick/fig2.yaml")),
    ("fig3.yaml", include_str!("../configs/quick/fig3.yaml")),
    ("fig1.yaml", include_str!("../configs/quick/fig1.yaml")),
    // Beyond the paper, but quick enough to belong to every reproduction.
    (
        "kurtosis-continuum.yaml",
        include_str!("../configs/beyond/kurtosis-continuum.yaml"),
    ),
];

pub const PAPER: &[(&str, &str)] = &[
    (
        "input-stats.yaml",
        include_str!("../configs/paper/input-stats.yaml"),
    ),
    (
        "fig1-mnist.yaml",
        include_str!("../configs/paper/fig1-mnist.yaml"),
    ),
    (
        "fig1-cifar10.yaml",
        include_str!("../configs/paper/fig1-cifar10.yaml"),
    ),
    (
        "fig2-cifar10.yaml",
        include_str!("../configs/paper/fig2-cifar10.yaml"),
    ),
    (
        "fig3-width10.yaml",
        include_str!("../configs/paper/fig3-width10.yaml"),
    ),
    (
        "fig3-width200.yaml",
        include_str!("../configs/paper/fig3-width200.yaml"),
    ),
];

snake_case_names! {
    /// The reproduction scales (`initlab reproduce --scale quick`).
    pub enum Scale {
        /// Minutes on two cores, on Fashion-MNIST (or synthetic data of its shape).
        Quick,
        /// The paper's settings, on MNIST and CIFAR-10.
        Paper,
    }
}

/// Which data a scale's configs read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// The datasets the configs name.
    AsWritten,
    /// Fashion-MNIST's experiments on the synthetic dataset of its shape (for a
    /// machine without Fashion-MNIST).
    SyntheticForFashionMnist,
}

/// The configs of a scale, reading `data`.
pub fn configs(scale: Scale, data: Data) -> Result<Vec<Config>> {
    let set = match scale {
        Scale::Quick => QUICK,
        Scale::Paper => PAPER,
    };
    set.iter()
        .map(|(file, text)| {
            let stem = file.trim_end_matches(".yaml");
            let text = if data == Data::SyntheticForFashionMnist {
                text.replace("dataset: fashion-mnist", "dataset: synthetic")
            } else {
                text.to_string()
            };
            Config::parse(&text, stem).with_context(|| format!("embedded config {scale}/{file}"))
        })
        .collect()
}

/// Gives every experiment of `config` that reads a dataset the input
/// normalisation `normalization`, and says so in the config's text (kept in the
/// run directory) so the run directory records how it was made.
pub fn set_normalization(config: &mut Config, normalization: Normalization) -> Result<()> {
    let name = serde_yaml::to_value(normalization)?;
    for e in &mut config.experiments {
        if e.params.contains_key("dataset") {
            e.params.insert("normalization".into(), name.clone());
        }
    }
    config.source_text.push_str(&format!(
        "# initlab reproduce --normalization {}: every experiment that reads a dataset uses it.\n",
        name.as_str().unwrap_or_default()
    ));
    Ok(())
}
