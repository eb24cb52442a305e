//! One function per subcommand, in one file each; `dispatch` picks it.

pub mod data;
pub mod plot;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod slurm;
pub mod theory;

use crate::cli::{Cli, Command, DataCommand};
use anyhow::Result;

/// Applies global options and runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> Result<()> {
    let threads = set_threads(cli.threads)?;
    match cli.command {
        Command::Theory(args) => theory::run(args),
        Command::Run(args) => run::run(args, threads),
        Command::Data(DataCommand::Check(args)) => data::check(args),
        Command::Data(DataCommand::Fetch(args)) => data::fetch(args),
        Command::InputStats(args) => data::input_stats(args),
        Command::Reproduce(args) => reproduce::run(args, threads),
        Command::Plot(args) => plot::run(args),
        Command::Report(args) => report::run(args),
        Command::Merge(args) => {
            let report = crate::merge::merge(&args.dirs, args.out.as_deref())?;
            for line in report.lines() {
                println!("{line}");
            }
            if !report.complete() {
                anyhow::bail!(
                    "the merged results in {} are incomplete (units missing above): rerun the shards that failed",
                    report.out.display()
                );
            }
            eprintln!("merged into {}", report.out.display());
            Ok(())
        }
        Command::Slurm(args) => slurm::run(args),
        Command::Columns(args) => {
            let all = crate::experiment::Kind::all();
            for kind in if args.kinds.is_empty() {
                all
            } else {
                &args.kinds
            } {
                println!("{kind}: {}", kind.columns().join(", "));
            }
            Ok(())
        }
        Command::Bench(args) => crate::bench::run(&crate::bench::BenchOptions {
            dataset: args.dataset,
            networks: args.networks,
            ensemble: args.ensemble,
            sections: args.only,
            data_dir: args.data.data_dir,
        }),
    }
}

/// Sets libtorch's intra-op threads (default: all cores) and returns the number.
pub fn set_threads(requested: Option<usize>) -> Result<usize> {
    let threads = match requested {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    tch::set_num_threads(threads as i32);
    // initlab's own kernels (fused statistics, narrow training) run on rayon's pool.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    Ok(threads)
}
