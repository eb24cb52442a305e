//! `initlab reproduce --scale quick|paper`: every config of a scale (embedded in
//! the binary, the same files as under configs/), each into its own run directory
//! under --out, resuming like any run; then REPORT.md beside them (the paper's
//! claims checked, see [`crate::report`]) and its verdict table.

use crate::cli::ReproduceArgs;
use crate::data::{DatasetName, Normalization};
use crate::experiment::sweep::{self, RunOptions};
use crate::scales::{Data, Scale, configs, set_normalization};
use anyhow::{Context as _, Result, bail};
use std::path::PathBuf;

pub fn run(args: ReproduceArgs, threads: usize) -> Result<()> {
    // The quick scale wants Fashion-MNIST; without it, the synthetic dataset of the
    // same shape keeps the reproduction running anywhere (and says so).
    let source = args.data.source();
    let synthetic_instead =
        args.scale == Scale::Quick && source.find(DatasetName::FashionMnist).is_none();
    if synthetic_instead {
        eprintln!(
            "note: Fashion-MNIST is not installed ({}); the quick reproduction runs on the synthetic dataset instead. \
             For real data: apt-get install dataset-fashion-mnist, or initlab data fetch fashion-mnist",
            source
                .data_dir
                .join(DatasetName::FashionMnist.folder())
                .display()
        );
    }
    let data = if synthetic_instead {
        Data::SyntheticForFashionMnist
    } else {
        Data::AsWritten
    };
    let mut configs = configs(args.scale, data)?;
    if let Some(normalization) = args.normalization {
        for config in &mut configs {
            set_normalization(config, normalization)?;
        }
    }
    let default_out = match args.normalization {
        Some(Normalization::Authors) => "outputs-authors",
        _ => "outputs",
    };
    let out = args.out.unwrap_or_else(|| PathBuf::from(default_out));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    if args.scale == Scale::Paper {
        // Say what is missing before hours of work start.
        let missing: Vec<String> = [DatasetName::Mnist, DatasetName::Cifar10]
            .iter()
            .filter(|d| source.find(**d).is_none())
            .map(|d| format!("{}", source.missing(*d)))
            .collect();
        if !missing.is_empty() {
            bail!(
                "the paper scale needs MNIST and CIFAR-10:\n{}",
                missing.join("\n")
            );
        }
    }
    let started = std::time::Instant::now();
    let mut table = Vec::new();
    let mut figures = Vec::new();
    let mut dirs = Vec::new();
    for config in &configs {
        let opts = RunOptions {
            out: Some(out.join(&config.name)),
            data_dir: args.data.data_dir.clone(),
            threads,
            shard: None,
            memory_budget: super::run::memory_budget(args.memory.memory_gb)?,
            allow_data_change: false,
        };
        eprintln!("== {} ==", config.name);
        let summary =
            sweep::run(config, &opts).with_context(|| format!("reproducing {}", config.name))?;
        let files = crate::plot::plot_run_dir(&summary.out)
            .with_context(|| format!("drawing {}", config.name))?;
        figures.extend(
            files
                .into_iter()
                .filter(|f| f.extension().is_some_and(|e| e == "png")),
        );
        table.push(format!(
            "{:<14} {:>6} units ({:>5} run now) {:>8.1} s   {}",
            config.name,
            summary.units_total,
            summary.units_run,
            summary.wall_time_s,
            summary.out.display()
        ));
        dirs.push(summary.out);
    }
    let report = crate::report::build(&dirs).context("writing the reproduction report")?;
    let report_path = report.write(&out)?;
    println!(
        "reproduction ({} scale) finished in {:.1} s",
        args.scale,
        started.elapsed().as_secs_f64()
    );
    println!("\nruns:");
    for l in table {
        println!("  {l}");
    }
    println!("\nfigures:");
    for f in figures {
        println!("  {}", f.display());
    }
    println!();
    super::report::print_verdicts(&report, &report_path);
    Ok(())
}
