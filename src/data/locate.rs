//! Where dataset files are found: the data directory (`--data-dir`, then the
//! config's `data_dir`, then `$INITLAB_DATA_DIR`, then `./data`), where each dataset
//! has its folder (`mnist/`, `fashion-mnist/`, `cifar10/`); then the places system
//! packages install datasets (Debian's `dataset-fashion-mnist`).

use super::{DataError, DatasetName, RawSplits, cifar, idx};
use std::path::{Path, PathBuf};

pub const ENV_DATA_DIR: &str = "INITLAB_DATA_DIR";

/// The IDX file names of MNIST and Fashion-MNIST, in order: train images, train
/// labels, test images, test labels.
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

#[derive(Debug, Clone)]
pub struct DataSource {
    /// The data directory in use.
    pub data_dir: PathBuf,
    /// Whether it was chosen explicitly (flag, config or environment).
    pub explicit: bool,
}

impl DataSource {
    /// `flag_or_config` is `--data-dir` if given, else the config's `data_dir`.
    pub fn new(flag_or_config: Option<PathBuf>) -> Self {
        if let Some(dir) = flag_or_config {
            return DataSource {
                data_dir: dir,
                explicit: true,
            };
        }
        if let Some(dir) = std::env::var_os(ENV_DATA_DIR).filter(|d| !d.is_empty()) {
            return DataSource {
                data_dir: PathBuf::from(dir),
                explicit: true,
            };
        }
        DataSource {
            data_dir: PathBuf::from("data"),
            explicit: false,
        }
    }

    /// Folders that may hold a dataset's files, in the order they are tried.
    pub fn candidates(&self, name: DatasetName) -> Vec<PathBuf> {
        let mut out = vec![self.data_dir.join(name.folder())];
        if name == DatasetName::Cifar10 {
            out.push(self.data_dir.join("cifar-10"));
        }
        out.push(self.data_dir.clone());
        out.extend(system_locations(name));
        out
    }

    /// The folder holding the dataset's files, if any.
    pub fn find(&self, name: DatasetName) -> Option<PathBuf> {
        self.candidates(name)
            .into_iter()
            .find(|dir| has_files(name, dir))
    }

    /// Reads the raw bytes of both splits.
    pub fn load_raw(&self, name: DatasetName) -> Result<RawSplits, DataError> {
        let dir = self.find(name).ok_or_else(|| self.missing(name))?;
        match name {
            DatasetName::Mnist | DatasetName::FashionMnist => {
                let paths: Vec<PathBuf> = IDX_FILES
                    .iter()
                    .map(|f| idx_path(&dir, f).ok_or_else(|| self.missing(name)))
                    .collect::<Result<_, _>>()?;
                let (train, train_labels) = idx::read_split(&paths[0], &paths[1], 10)?;
                let (test, test_labels) = idx::read_split(&paths[2], &paths[3], 10)?;
                for (arr, path) in [(&train, &paths[0]), (&test, &paths[2])] {
                    if arr.dims[1..] != [28, 28] {
                        return Err(DataError::Corrupt(
                            path.clone(),
                            format!("images are {:?}, expected 28×28", &arr.dims[1..]),
                        ));
                    }
                }
                Ok(RawSplits {
                    train_pixels: train.data,
                    train_labels,
                    test_pixels: test.data,
                    test_labels,
                    files: paths,
                })
            }
            DatasetName::Cifar10 => {
                let location = cifar::locate(&dir).ok_or_else(|| self.missing(name))?;
                let (train, test, files) = cifar::load(&location)?;
                Ok(RawSplits {
                    train_pixels: train.pixels,
                    train_labels: train.labels,
                    test_pixels: test.pixels,
                    test_labels: test.labels,
                    files,
                })
            }
            DatasetName::Synthetic(_) => Err(DataError::Unsupported(
                "the synthetic dataset has no files".into(),
            )),
        }
    }

    /// The error for a dataset that is not found: what was expected, where, and how to get it.
    pub fn missing(&self, name: DatasetName) -> DataError {
        let expected = match name {
            DatasetName::Cifar10 => format!(
                "{} … {} and {} (in cifar-10-batches-bin/ or directly), or the archive {}",
                cifar::TRAIN_FILES[0],
                cifar::TRAIN_FILES[4],
                cifar::TEST_FILE,
                cifar::ARCHIVE
            ),
            _ => format!("{} (plain or .gz)", IDX_FILES.join(", ")),
        };
        let looked: Vec<String> = self
            .candidates(name)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut how = format!(
            "get it with `initlab data fetch {name}` (into {}), or copy the files from a mirror into {}",
            self.data_dir.display(),
            self.data_dir.join(name.folder()).display()
        );
        if name == DatasetName::FashionMnist {
            how.push_str(", or install Debian's package: apt-get install dataset-fashion-mnist");
        }
        DataError::Missing(format!(
            "dataset {name} not found: expected {expected}; looked in {}. To fix: {how}; --data-dir DIR or ${ENV_DATA_DIR} choose the data directory",
            looked.join(", ")
        ))
    }
}

/// `dir/file` or `dir/file.gz`, whichever exists.
pub fn idx_path(dir: &Path, file: &str) -> Option<PathBuf> {
    let plain = dir.join(file);
    if plain.exists() {
        return Some(plain);
    }
    let gz = dir.join(format!("{file}.gz"));
    gz.exists().then_some(gz)
}

fn has_files(name: DatasetName, dir: &Path) -> bool {
    match name {
        DatasetName::Mnist | DatasetName::FashionMnist => {
            IDX_FILES.iter().all(|f| idx_path(dir, f).is_some())
        }
        DatasetName::Cifar10 => cifar::locate(dir).is_some(),
        DatasetName::Synthetic(_) => false,
    }
}

/// Where system packages put datasets. Debian's `dataset-fashion-mnist` is asked
/// with `dpkg -L`; its usual path is tried too.
pub fn system_locations(name: DatasetName) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let package = match name {
        DatasetName::FashionMnist => Some("dataset-fashion-mnist"),
        DatasetName::Mnist => Some("dataset-mnist"),
        _ => None,
    };
    if let Some(package) = package {
        if let Ok(output) = std::process::Command::new("dpkg")
            .args(["-L", package])
            .output()
            && output.status.success()
        {
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                if (line.ends_with(&format!("{}.gz", IDX_FILES[0])) || line.ends_with(IDX_FILES[0]))
                    && let Some(parent) = Path::new(line).parent()
                {
                    out.push(parent.to_path_buf());
                }
            }
        }
        out.push(PathBuf::from("/usr/share/datasets").join(name.folder()));
    }
    out.dedup();
    out
}
