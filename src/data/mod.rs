//! Datasets from their standard files (MNIST and Fashion-MNIST as IDX, CIFAR-10's
//! binary batches), plus a synthetic one that needs no files; normalisation as the
//! paper states it (or the authors' constants); inputs flattened to `[N, C·H·W]` f32
//! and labels `[N]` i64, train and test kept apart.

pub mod cifar;
pub mod fetch;
pub mod idx;
pub mod locate;
pub mod synthetic;

pub use locate::DataSource;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use thiserror::Error;

/// What can be wrong with a dataset; every message says what to do.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("{0}")]
    Missing(String),
    #[error("{0}: cannot read ({1})")]
    Io(PathBuf, String),
    #[error("{0} is corrupt: {1}")]
    Corrupt(PathBuf, String),
    #[error("{0}")]
    Mismatch(String),
    #[error("{0}")]
    Unsupported(String),
}

/// The datasets initlab knows, named in YAML and on the command line as shown by
/// `Display` (`mnist`, `fashion-mnist`, `cifar10`, `synthetic`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DatasetName {
    Mnist,
    FashionMnist,
    Cifar10,
    Synthetic(synthetic::Shape),
}

impl DatasetName {
    pub const ALL_NAMES: [&'static str; 7] = [
        "mnist",
        "fashion-mnist",
        "cifar10",
        "synthetic",
        "synthetic-small",
        "synthetic-cifar",
        "synthetic-tiny",
    ];

    pub fn parse(s: &str) -> Result<Self, DataError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "mnist" => DatasetName::Mnist,
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" => DatasetName::FashionMnist,
            "cifar10" | "cifar-10" | "cifar_10" => DatasetName::Cifar10,
            other => match synthetic::Shape::from_name(other) {
                Some(shape) => DatasetName::Synthetic(shape),
                None => {
                    return Err(DataError::Unsupported(format!(
                        "unknown dataset `{s}`; known: {}",
                        Self::ALL_NAMES.join(", ")
                    )));
                }
            },
        })
    }

    /// The folder under a data directory where the files are expected.
    pub fn folder(&self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Synthetic(_) => "synthetic",
        }
    }

    /// Channels, height and width of one image (synthetic: C = 1, H = 1, W = features).
    pub fn image_shape(&self) -> (usize, usize, usize) {
        match self {
            DatasetName::Mnist | DatasetName::FashionMnist => (1, 28, 28),
            DatasetName::Cifar10 => (3, 32, 32),
            DatasetName::Synthetic(s) => (1, 1, s.features),
        }
    }

    pub fn features(&self) -> usize {
        let (c, h, w) = self.image_shape();
        c * h * w
    }

    pub fn is_synthetic(&self) -> bool {
        matches!(self, DatasetName::Synthetic(_))
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetName::Synthetic(s) => write!(f, "{}", s.name()),
            other => write!(f, "{}", other.folder()),
        }
    }
}

impl Serialize for DatasetName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DatasetName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DatasetName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How pixels are normalised after scaling to [0, 1].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Each channel to mean 0 and variance 1, with statistics of the training set
    /// (the paper's statement).
    #[default]
    Standard,
    /// The authors' fixed constants (MNIST 0.1307/0.3081; CIFAR-10's per channel).
    Authors,
    /// Pixels in [0, 1], nothing more.
    None,
}

impl Normalization {
    /// The name, as in YAML.
    pub fn name(&self) -> &'static str {
        match self {
            Normalization::Standard => "standard",
            Normalization::Authors => "authors",
            Normalization::None => "none",
        }
    }
}

/// A loaded dataset.
pub struct Dataset {
    pub name: DatasetName,
    /// `[N_train, D]` f32.
    pub train_x: Tensor,
    /// `[N_train]` i64.
    pub train_y: Tensor,
    pub test_x: Tensor,
    pub test_y: Tensor,
    pub classes: usize,
    pub normalization: Normalization,
    /// Per-channel mean and standard deviation used (of pixels in [0, 1]).
    pub channel_mean: Vec<f64>,
    pub channel_std: Vec<f64>,
    /// The files read, with sizes and SHA-256.
    pub files: Vec<FileRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

impl FileRecord {
    pub fn of(path: &Path) -> Result<Self, DataError> {
        let bytes =
            std::fs::read(path).map_err(|e| DataError::Io(path.to_path_buf(), e.to_string()))?;
        Ok(FileRecord {
            path: path.to_path_buf(),
            bytes: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Raw pixel bytes `[N, C·H·W]` (channel-major) and labels of both splits.
pub struct RawSplits {
    pub train_pixels: Vec<u8>,
    pub train_labels: Vec<u8>,
    pub test_pixels: Vec<u8>,
    pub test_labels: Vec<u8>,
    pub files: Vec<PathBuf>,
}

/// The authors' constants (mean, std per channel) where they exist.
fn authors_constants(name: DatasetName) -> Option<(Vec<f64>, Vec<f64>)> {
    match name {
        DatasetName::Mnist => Some((vec![0.1307], vec![0.3081])),
        DatasetName::Cifar10 => Some((vec![0.4914, 0.4822, 0.4465], vec![0.2023, 0.1994, 0.2010])),
        _ => None,
    }
}

impl Dataset {
    /// Loads and normalises a dataset.
    pub fn load(
        name: DatasetName,
        normalization: Normalization,
        source: &DataSource,
    ) -> Result<Dataset> {
        if let DatasetName::Synthetic(shape) = name {
            return Ok(synthetic::generate(shape));
        }
        let raw = source.load_raw(name)?;
        let files = raw
            .files
            .iter()
            .map(|p| FileRecord::of(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_raw(name, normalization, raw, files)?)
    }

    /// Normalises raw splits into tensors.
    pub fn from_raw(
        name: DatasetName,
        normalization: Normalization,
        raw: RawSplits,
        files: Vec<FileRecord>,
    ) -> Result<Dataset, DataError> {
        let (channels, h, w) = name.image_shape();
        let features = channels * h * w;
        let (mean, std) = match normalization {
            Normalization::Standard => pixel_statistics(&raw.train_pixels, channels, h * w),
            Normalization::Authors => authors_constants(name).ok_or_else(|| {
                DataError::Unsupported(format!(
                    "normalization: authors has constants only for mnist and cifar10, not {name}; use normalization: standard"
                ))
            })?,
            Normalization::None => (vec![0.0; channels], vec![1.0; channels]),
        };
        let to_tensor = |pixels: &[u8]| -> Tensor {
            let n = pixels.len() / features;
            let x = Tensor::from_slice(pixels).view([n as i64, channels as i64, (h * w) as i64]);
            // (p/255 − mean)/std = p · 1/(255 std) − mean/std, per channel
            let scale: Vec<f32> = std.iter().map(|s| (1.0 / (255.0 * s)) as f32).collect();
            let shift: Vec<f32> = mean.iter().zip(&std).map(|(m, s)| (m / s) as f32).collect();
            let scale = Tensor::from_slice(&scale).view([1, channels as i64, 1]);
            let shift = Tensor::from_slice(&shift).view([1, channels as i64, 1]);
            (x.to_kind(Kind::Float) * scale - shift).view([n as i64, features as i64])
        };
        let labels = |l: &[u8]| Tensor::from_slice(l).to_kind(Kind::Int64);
        Ok(Dataset {
            name,
            train_x: to_tensor(&raw.train_pixels),
            train_y: labels(&raw.train_labels),
            test_x: to_tensor(&raw.test_pixels),
            test_y: labels(&raw.test_labels),
            classes: 10,
            normalization,
            channel_mean: mean,
            channel_std: std,
            files,
        })
    }

    pub fn features(&self) -> usize {
        self.train_x.size()[1] as usize
    }

    pub fn train_len(&self) -> usize {
        self.train_x.size()[0] as usize
    }

    pub fn test_len(&self) -> usize {
        self.test_x.size()[0] as usize
    }

    /// What a run's metadata records about this dataset.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name.to_string(),
            "train": self.train_len(),
            "test": self.test_len(),
            "features": self.features(),
            "normalization": self.normalization,
            "channel_mean": self.channel_mean,
            "channel_std": self.channel_std,
            "files": self.files,
        })
    }
}

/// Exact per-channel mean and standard deviation of pixels/255 over a split, from
/// byte histograms (so no rounding error accumulates). `pixels` is `[N, C, HW]`.
pub fn pixel_statistics(
    pixels: &[u8],
    channels: usize,
    per_channel: usize,
) -> (Vec<f64>, Vec<f64>) {
    use rayon::prelude::*;
    let image = channels * per_channel;
    let histograms: Vec<[u64; 256]> = pixels
        .par_chunks(image * 1024)
        .map(|block| {
            let mut h = vec![[0u64; 256]; channels];
            for img in block.chunks_exact(image) {
                for (c, hist) in h.iter_mut().enumerate() {
                    for &p in &img[c * per_channel..(c + 1) * per_channel] {
                        hist[p as usize] += 1;
                    }
                }
            }
            h
        })
        .reduce(
            || vec![[0u64; 256]; channels],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    for (u, v) in x.iter_mut().zip(y) {
                        *u += v;
                    }
                }
                a
            },
        );
    let mut means = Vec::with_capacity(channels);
    let mut stds = Vec::with_capacity(channels);
    for hist in histograms {
        let count: u64 = hist.iter().sum();
        let mean = hist
            .iter()
            .enumerate()
            .map(|(v, &c)| v as f64 * c as f64)
            .sum::<f64>()
            / count as f64;
        let var = hist
            .iter()
            .enumerate()
            .map(|(v, &c)| (v as f64 - mean).powi(2) * c as f64)
            .sum::<f64>()
            / count as f64;
        means.push(mean / 255.0);
        // a constant channel cannot be scaled to unit variance: leave its scale alone
        stds.push(if var > 0.0 { var.sqrt() / 255.0 } else { 1.0 });
    }
    (means, stds)
}
