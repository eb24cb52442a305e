//! A dataset that needs no files: He random vectors (iid standard normal entries:
//! zero mean, unit variance) labelled by a fixed random teacher (a linear map to
//! ten classes, its offsets tuned so the classes are balanced), so that training on
//! it is meaningful and learnable by a narrow network. The same name always gives
//! the same data.

use super::{Dataset, Normalization};
use crate::seed;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use tch::{Kind, Tensor};

/// Sizes of a synthetic dataset, chosen by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape {
    pub features: usize,
    pub train: usize,
    pub test: usize,
}

impl Shape {
    /// `synthetic` has Fashion-MNIST's shape, `synthetic-cifar` CIFAR-10's;
    /// `synthetic-small` and `synthetic-tiny` are for quick checks and tests.
    pub fn from_name(name: &str) -> Option<Shape> {
        Some(match name {
            "synthetic" => Shape {
                features: 784,
                train: 60_000,
                test: 10_000,
            },
            "synthetic-cifar" => Shape {
                features: 3072,
                train: 50_000,
                test: 10_000,
            },
            "synthetic-small" => Shape {
                features: 64,
                train: 8_192,
                test: 2_048,
            },
            "synthetic-tiny" => Shape {
                features: 16,
                train: 1_024,
                test: 512,
            },
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match (self.features, self.train) {
            (784, 60_000) => "synthetic",
            (3072, 50_000) => "synthetic-cifar",
            (64, 8_192) => "synthetic-small",
            _ => "synthetic-tiny",
        }
    }
}

const CLASSES: usize = 10;
/// Rows generated per random stream: chunks are independent, so generation runs in parallel.
const ROWS_PER_STREAM: usize = 256;

/// `rows × features` iid standard normals from streams named by `label`.
pub fn gaussian_rows(label: &str, rows: usize, features: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * features];
    out.par_chunks_mut(ROWS_PER_STREAM * features)
        .enumerate()
        .for_each(|(chunk, values)| {
            let mut rng = seed::stream(0, &["synthetic", label, &chunk.to_string()]);
            for v in values.iter_mut() {
                *v = StandardNormal.sample(&mut rng);
            }
        });
    out
}

/// The dataset of a shape: inputs, and labels from the teacher network.
pub fn generate(shape: Shape) -> Dataset {
    let name = shape.name();
    let make = |split: &str, rows: usize| -> Tensor {
        Tensor::from_slice(&gaussian_rows(
            &format!("{name}/{split}"),
            rows,
            shape.features,
        ))
        .view([rows as i64, shape.features as i64])
    };
    let train_x = make("train", shape.train);
    let test_x = make("test", shape.test);
    let teacher = Teacher::new(name, shape.features);
    let train_y = teacher.label(&train_x);
    let test_y = teacher.label(&test_x);
    Dataset {
        name: super::DatasetName::Synthetic(shape),
        train_x,
        train_y,
        test_x,
        test_y,
        classes: CLASSES,
        normalization: Normalization::None,
        channel_mean: vec![0.0],
        channel_std: vec![1.0],
        files: Vec::new(),
    }
}

/// A fixed random linear map `features → 10` with class offsets that balance its
/// argmax over Gaussian inputs.
struct Teacher {
    w: Tensor,
    offsets: Tensor,
}

impl Teacher {
    fn new(name: &str, features: usize) -> Teacher {
        let w = Tensor::from_slice(&gaussian_rows(
            &format!("{name}/teacher"),
            CLASSES,
            features,
        ))
        .view([CLASSES as i64, features as i64])
            * (1.0 / features as f64).sqrt();
        let mut teacher = Teacher {
            w,
            offsets: Tensor::zeros([CLASSES as i64], (Kind::Float, tch::Device::Cpu)),
        };
        // Balance the classes on a calibration sample: shift each logit by minus
        // the log of how over-represented its class is, a few times.
        let calibration = Tensor::from_slice(&gaussian_rows(
            &format!("{name}/calibration"),
            8192,
            features,
        ))
        .view([8192, features as i64]);
        let logits = teacher.logits(&calibration);
        for _ in 0..50 {
            let labels = (&logits + &teacher.offsets).argmax(1, false);
            let counts = labels
                .bincount::<Tensor>(None, CLASSES as i64)
                .to_kind(Kind::Float)
                + 1.0;
            let share = &counts / counts.sum(Kind::Float);
            teacher.offsets = &teacher.offsets - (share * CLASSES as f64).log() * 0.5;
        }
        teacher
    }

    fn logits(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.w.tr())
    }

    fn label(&self, x: &Tensor) -> Tensor {
        (self.logits(x) + &self.offsets)
            .argmax(1, false)
            .to_kind(Kind::Int64)
    }
}
