//! `initlab data check`, `initlab data fetch` and `initlab input-stats`.

use crate::cli::{DataCheckArgs, DataFetchArgs, InputStatsArgs};
use crate::data::fetch::{self, FetchOptions};
use crate::data::{Dataset, DatasetName};
use crate::experiment::PointKey;
use crate::experiment::input_stats;
use crate::results::{Table, write_parquet};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

pub fn check(args: DataCheckArgs) -> Result<()> {
    let source = args.data.source();
    println!("data directory: {}", source.data_dir.display());
    let mut missing = 0;
    for name in [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
    ] {
        match source.find(name) {
            Some(dir) => {
                println!("{name}: present in {}", dir.display());
                let raw = source.load_raw(name);
                for path in files_in(name, &dir) {
                    // Streamed, not read whole: a huge (or sparse) file costs no memory.
                    let bytes = std::fs::metadata(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                        .len();
                    let (md5, sha256) = fetch::file_digests(&path)?;
                    let published = fetch::sources(name)?.1.into_iter().find(|r| {
                        path.file_name()
                            .is_some_and(|f| f.to_string_lossy() == r.file)
                    });
                    let note = match published {
                        Some(r) => match (
                            r.md5.as_deref() == Some(md5.as_str()),
                            r.sha256.as_deref() == Some(sha256.as_str()),
                        ) {
                            (true, true) => {
                                "matches the published MD5 and the pinned SHA-256".to_string()
                            }
                            // An MD5 collision is cheap to forge; the SHA-256 is not.
                            (true, false) => format!(
                                "matches the published MD5 but NOT the pinned SHA-256: a forged or tampered copy; replace it with `initlab data fetch {name} --force`"
                            ),
                            _ => "differs from the published checksums (repacked or another copy)"
                                .to_string(),
                        },
                        None => String::new(),
                    };
                    println!(
                        "  {:<32} {:>11} bytes  sha256 {}  {note}",
                        path.file_name().unwrap_or_default().to_string_lossy(),
                        bytes,
                        sha256
                    );
                }
                match raw {
                    Ok(r) => println!(
                        "  loads: {} train and {} test images",
                        r.train_labels.len(),
                        r.test_labels.len()
                    ),
                    Err(e) => {
                        missing += 1;
                        println!("  BROKEN: {e}")
                    }
                }
            }
            None => {
                missing += 1;
                println!("{name}: missing. {}", source.missing(name));
            }
        }
    }
    println!(
        "synthetic, synthetic-small, synthetic-tiny, synthetic-cifar: generated, always available"
    );
    if missing > 0 {
        println!(
            "{missing} dataset(s) missing or broken; the quick reproduction needs only fashion-mnist or synthetic data"
        );
    }
    Ok(())
}

fn files_in(name: DatasetName, dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    match name {
        DatasetName::Cifar10 => match crate::data::cifar::locate(dir) {
            Some(crate::data::cifar::Location::Archive(p)) => vec![p],
            Some(crate::data::cifar::Location::Folder(d)) => crate::data::cifar::TRAIN_FILES
                .iter()
                .chain(std::iter::once(&crate::data::cifar::TEST_FILE))
                .map(|f| d.join(f))
                .filter(|p| p.exists())
                .collect(),
            None => vec![],
        },
        _ => crate::data::locate::IDX_FILES
            .iter()
            .filter_map(|f| crate::data::locate::idx_path(dir, f))
            .collect(),
    }
}

pub fn fetch(args: DataFetchArgs) -> Result<()> {
    let name = args.dataset;
    let source = args.data.source();
    let checksums = match &args.checksums {
        Some(p) => Some(fetch::read_checksums(p)?),
        None => None,
    };
    let opts = FetchOptions {
        mirror: args.mirror,
        checksums,
        force: args.force,
    };
    let files = fetch::fetch(name, &source.data_dir, &opts)?;
    for f in &files {
        println!("{}", f.display());
    }
    eprintln!(
        "{name}: {} file(s) verified in {}",
        files.len(),
        source.data_dir.join(name.folder()).display()
    );
    Ok(())
}

pub fn input_stats(args: InputStatsArgs) -> Result<()> {
    let (name, weights, normalization) = (args.dataset, args.weights, args.normalization);
    if args.samples < 2 {
        bail!("--samples must be at least 2");
    }
    if let Some(out) = &args.out
        && let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        bail!(
            "cannot write {}: directory {} does not exist",
            out.display(),
            parent.display()
        );
    }
    let source = args.data.source();
    let load_start = std::time::Instant::now();
    let data = Dataset::load(name, normalization, &source)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let stats = input_stats::estimate(&data, weights, args.samples, args.seed)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name} ({} weights, {} samples in {} blocks, seed {}):\n  kappa0 = {:.5} ± {:.5}\n  c0     = {:.5} ± {:.5}\n  exact over the training set: kappa0 = {:.5}, c0 = {:.5}\n  (load {load_s:.2}s, estimate {secs:.2}s)",
        weights.name(),
        stats.samples,
        stats.blocks,
        args.seed,
        stats.kappa0,
        stats.kappa0_se,
        stats.c0,
        stats.c0_se,
        stats.kappa0_exact,
        stats.c0_exact
    );
    if let Some(out) = &args.out {
        let mut t = Table::new();
        // The point's key with the seed: this command seeds its draws directly.
        let point = input_stats::InputStatsPoint {
            dataset: name,
            samples: args.samples,
            weights,
            normalization,
        };
        let unit = point.key()?.uint("seed", args.seed).id();
        t.push(stats.row(&unit, &name.to_string(), weights, normalization, args.seed));
        let meta = BTreeMap::from([(
            "initlab_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        )]);
        write_parquet(out, &mut t.to_dataframe()?, &meta)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
