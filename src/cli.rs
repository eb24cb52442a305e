//! The command line: one struct per subcommand (clap derive; doc comments are
//! the help text). The work behind each lives in [`crate::cmd`].

use crate::data::{DataSource, DatasetName, Normalization};
use crate::experiment::Kind;
use crate::experiment::theory::TheoryPoint;
use crate::init::dist::WeightDist;
use crate::scales::Scale;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsStr;
use std::path::PathBuf;

/// initlab: how weight initialisation shapes deep ReLU networks.
///
/// Reproduces "The Vanishing Empirical Variance in Randomly Initialized Deep
/// ReLU Networks": theory, datasets, ensembles of networks, experiments as
/// resumable YAML sweeps with Parquet results, figures.
#[derive(Debug, Parser)]
#[command(name = "initlab", version, propagate_version = true)]
pub struct Cli {
    /// libtorch intra-op threads (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The paper's theory for one network: kurtosis recursion (Prop. 3),
    /// largest eigenvalue (Lemma 4) and the empirical-variance law (Section 5).
    Theory(TheoryArgs),
    /// Run (or resume) the experiments of a YAML config into a run directory.
    Run(RunArgs),
    /// Datasets: check what is present, fetch what is missing.
    #[command(subcommand)]
    Data(DataCommand),
    /// Estimate the input statistics κ₀ and c₀ of a dataset's He random vector (Section 6.1).
    InputStats(InputStatsArgs),
    /// Reproduce the paper: run every config of a scale, then draw every figure.
    Reproduce(ReproduceArgs),
    /// Draw a run directory's figures (PNG and SVG) into <RUN_DIR>/figures and print a summary.
    Plot(PlotArgs),
    /// Write REPORT.md: which of the paper's claims hold, from existing run directories.
    Report(ReportArgs),
    /// Measure throughput against this machine's matmul and bmm rates.
    Bench(BenchArgs),
    /// Join the shards of a sweep (one run directory, or several of the same
    /// config) into one table per experiment; report missing and duplicated units.
    Merge(MergeArgs),
    /// Submit a sweep to SLURM as an array job (one task per shard) and say how to follow it.
    Slurm(SlurmArgs),
    /// List the columns of the results tables each experiment kind writes.
    Columns(ColumnsArgs),
}

#[derive(Debug, Args)]
pub struct ColumnsArgs {
    /// The kinds to list (default: every kind).
    #[arg(value_enum)]
    pub kinds: Vec<Kind>,
}

#[derive(Debug, Args)]
pub struct SlurmArgs {
    /// The YAML config of the sweep.
    pub config: PathBuf,
    /// Number of array tasks (shards), balanced by cost.
    #[arg(long)]
    pub tasks: usize,
    /// Run directory on a filesystem every node sees (default: outputs/<config name>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// SLURM partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per task (SLURM format, e.g. 02:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per task (also libtorch's threads).
    #[arg(long, default_value_t = 2)]
    pub cpus_per_task: usize,
    /// Memory per task (SLURM format, e.g. 8G).
    #[arg(long)]
    pub mem: Option<String>,
    /// Write and print the script without submitting it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Run directories made by the same config (shards of one sweep).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged run directory goes (default: in place, for a single directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run directories written by `initlab run` (or `initlab reproduce`).
    #[arg(required = true, value_name = "RUN_DIR")]
    pub run_dirs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Dataset whose shape the Fig. 2 benchmark uses.
    #[arg(long, default_value = "fashion-mnist", value_parser = Named::datasets())]
    pub dataset: DatasetName,
    /// Networks in the Fig. 2 benchmark.
    #[arg(long, default_value_t = 1000)]
    pub networks: usize,
    /// Ensemble size of the Fig. 2 benchmark.
    #[arg(long, default_value_t = 250)]
    pub ensemble: usize,
    /// Sections to run (default all but paper): fig2, single, metainit, train, data;
    /// wide (width-200 training steps, their evaluation and MetaInit steps), wide-metainit (MetaInit's alone);
    /// paper (long) estimates the paper at its scale on
    /// synthetic inputs of its shapes.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    #[command(flatten)]
    pub data: DataDirArg,
}

/// `--data-dir`, for the commands that read datasets outside a config.
#[derive(Debug, Args)]
pub struct DataDirArg {
    /// Where dataset files are (default: $INITLAB_DATA_DIR, then ./data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArg {
    pub fn source(&self) -> DataSource {
        DataSource::new(self.data_dir.clone())
    }
}

/// `--memory-gb`, for the commands that run ensembles.
#[derive(Debug, Args)]
pub struct MemoryArg {
    /// Memory for ensembles, in GiB (default: 60% of the memory available now).
    #[arg(long, value_name = "GIB")]
    pub memory_gb: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directories, or folders of them (as `initlab reproduce --out` writes).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Folder for REPORT.md (default: the folder given, or the run directories' common parent).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// quick (minutes on two cores, Fashion-MNIST or synthetic data) or paper (the paper's settings).
    #[arg(long, value_enum, default_value_t = Scale::Quick)]
    pub scale: Scale,
    #[command(flatten)]
    pub memory: MemoryArg,
    /// Where the run directories and REPORT.md go (default: outputs, or
    /// outputs-authors with --normalization authors).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDirArg,
    /// Input normalisation of every experiment that reads a dataset: standard
    /// (each channel to mean 0, variance 1 with the dataset's own statistics, the
    /// paper's statement) or authors (the authors' fixed constants).
    #[arg(long, value_name = "NAME", value_enum)]
    pub normalization: Option<Normalization>,
}

#[derive(Debug, Args)]
pub struct TheoryArgs {
    /// Constant width of every layer (use with --depth).
    #[arg(long, conflicts_with = "widths")]
    pub width: Option<usize>,
    /// Number of layers (recursion steps).
    #[arg(long, allow_negative_numbers = true)]
    pub depth: Option<i64>,
    /// A width profile instead: entry l is the fan-in of the step into layer l (e.g. 10,20,10).
    #[arg(long, value_delimiter = ',')]
    pub widths: Option<Vec<usize>>,
    /// Kurtosis of the weights' distribution (normal 3, uniform 1.8, Bernoulli 1).
    #[arg(long, default_value_t = TheoryPoint::default().kappa_w)]
    pub kappa_w: f64,
    /// Kurtosis κ₀ of the input He random vector.
    #[arg(long, default_value_t = TheoryPoint::default().kappa0)]
    pub kappa0: f64,
    /// Covariance of squares of two input entries divided by σ⁴ (c₀).
    #[arg(long, default_value_t = TheoryPoint::default().c0, allow_negative_numbers = true)]
    pub c0: f64,
    /// Negative slope a of the leaky ReLU (0 = ReLU).
    #[arg(long, default_value_t = TheoryPoint::default().slope, allow_negative_numbers = true)]
    pub slope: f64,
    /// Theoretical variance σ² of every layer.
    #[arg(long, default_value_t = TheoryPoint::default().sigma2)]
    pub sigma2: f64,
    /// Sample size n of the empirical variance (Section 5).
    #[arg(long, default_value_t = TheoryPoint::default().n)]
    pub n: u64,
    /// Threshold t of the reported P(S_n²/σ² < t).
    #[arg(long, default_value_t = TheoryPoint::default().threshold)]
    pub threshold: f64,
    /// Write the table as Parquet to FILE instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The YAML config (see configs/ and docs/configs.md).
    pub config: PathBuf,
    /// Run directory (default: outputs/<config name>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Where dataset files are (default: the config's data_dir, $INITLAB_DATA_DIR, ./data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Run only part i of N of the sweep (1-based, e.g. 2/3), or `slurm` for the
    /// part of the SLURM array task this runs in (from SLURM_ARRAY_TASK_ID).
    /// Without it the whole sweep runs, inside an array job too.
    #[arg(long, value_name = "i/N|slurm")]
    pub shard: Option<String>,
    #[command(flatten)]
    pub memory: MemoryArg,
    /// Resume even though the dataset files differ (by SHA-256) from those the
    /// directory's results were computed from; the metadata records both.
    #[arg(long)]
    pub allow_data_change: bool,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// List which datasets are present (files, sizes, checksums) and how to get the rest.
    Check(DataCheckArgs),
    /// Download a dataset from its canonical location (or a mirror), verifying checksums.
    Fetch(DataFetchArgs),
}

#[derive(Debug, Args)]
pub struct DataCheckArgs {
    #[command(flatten)]
    pub data: DataDirArg,
}

#[derive(Debug, Args)]
pub struct DataFetchArgs {
    /// The dataset to download (the synthetic ones are generated, not downloaded).
    #[arg(value_parser = Named::fetchable_datasets())]
    pub dataset: DatasetName,
    #[command(flatten)]
    pub data: DataDirArg,
    /// Base URL of a mirror holding the same file names.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// md5sum- or sha256sum-style file of expected checksums, replacing the
    /// published MD5s and the SHA-256 pins (for mirrors of other files).
    #[arg(long, value_name = "FILE")]
    pub checksums: Option<PathBuf>,
    /// Download again even if verified files are present.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InputStatsArgs {
    /// Dataset whose inputs are drawn.
    #[arg(long, value_parser = Named::datasets())]
    pub dataset: DatasetName,
    /// Number of (input, weight row) samples of z = W x.
    #[arg(long, default_value_t = 10_000_000)]
    pub samples: u64,
    /// Seed of the random weights and input draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Distribution of W's entries.
    #[arg(long, default_value = "normal", value_parser = Named::weight_dists())]
    pub weights: WeightDist,
    /// Input normalisation: standard (train-set statistics), authors, none.
    #[arg(long, default_value = "standard", value_enum)]
    pub normalization: Normalization,
    #[command(flatten)]
    pub data: DataDirArg,
    /// Write the estimate as Parquet to FILE.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// A value of a closed set that its type parses (aliases and case included, as
/// configs name it), whose names `--help` lists and clap's error for an unknown
/// value lists too.
#[derive(Clone)]
pub struct Named<T> {
    names: Vec<&'static str>,
    parse: fn(&str) -> Option<T>,
}

impl Named<DatasetName> {
    fn datasets() -> Self {
        Named {
            names: DatasetName::ALL_NAMES.to_vec(),
            parse: |s| DatasetName::parse(s).ok(),
        }
    }

    /// Every dataset name is accepted (a synthetic one is refused with the
    /// reason by the fetch itself); only the downloadable ones are listed.
    fn fetchable_datasets() -> Self {
        let all = Self::datasets();
        Named {
            names: all
                .names
                .into_iter()
                .filter(|n| DatasetName::parse(n).is_ok_and(|d| !d.is_synthetic()))
                .collect(),
            ..all
        }
    }
}

impl Named<WeightDist> {
    fn weight_dists() -> Self {
        Named {
            names: [
                WeightDist::Normal,
                WeightDist::Uniform,
                WeightDist::Bernoulli,
            ]
            .map(|w| w.name())
            .to_vec(),
            parse: |s| WeightDist::parse(s).ok(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Named<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        if let Some(parsed) = value.to_str().and_then(self.parse) {
            return Ok(parsed);
        }
        // clap's own message for a value outside the list, with its suggestions.
        let listed = PossibleValuesParser::new(self.names.clone()).parse_ref(cmd, arg, value)?;
        unreachable!("`{listed}` is listed but does not parse")
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(self.names.iter().copied().map(PossibleValue::new)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed_names_parse<T>(named: Named<T>) -> Vec<&'static str> {
        for name in &named.names {
            assert!(
                (named.parse)(name).is_some(),
                "`{name}` is listed but does not parse"
            );
        }
        named.names
    }

    #[test]
    fn every_listed_value_parses_and_fetch_lists_the_downloadable_datasets() {
        assert_eq!(
            listed_names_parse(Named::datasets()).len(),
            DatasetName::ALL_NAMES.len()
        );
        assert_eq!(
            listed_names_parse(Named::fetchable_datasets()),
            ["mnist", "fashion-mnist", "cifar10"]
        );
        assert_eq!(
            listed_names_parse(Named::weight_dists()),
            ["normal", "uniform", "bernoulli"]
        );
    }
}
