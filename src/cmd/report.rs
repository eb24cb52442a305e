//! `initlab report DIR...`: (re)writes REPORT.md from existing run directories
//! and prints its verdict table.

use crate::cli::ReportArgs;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

pub fn run(args: ReportArgs) -> Result<()> {
    let folder = match args.out {
        Some(out) => out,
        None => default_folder(&args.dirs)?,
    };
    if !folder.is_dir() {
        bail!(
            "{} is not a directory: pass --out with an existing folder for REPORT.md",
            folder.display()
        );
    }
    let report = crate::report::build(&args.dirs)?;
    let path = report.write(&folder)?;
    print_verdicts(&report, &path);
    Ok(())
}

/// One folder given: that folder if it holds run directories, else the run
/// directory's parent; several: their common parent.
fn default_folder(dirs: &[PathBuf]) -> Result<PathBuf> {
    if let [one] = dirs
        && !crate::rundir::Layout::new(one).is_run_dir()
    {
        return Ok(one.clone());
    }
    let parents: Vec<PathBuf> = dirs
        .iter()
        .map(|d| {
            std::path::absolute(d)
                .unwrap_or_else(|_| d.clone())
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
        .collect();
    let mut common = parents[0].clone();
    while !parents.iter().all(|p| p.starts_with(&common)) {
        if !common.pop() {
            break;
        }
    }
    Ok(common)
}

/// The verdict table and where the report is, as `reproduce` and `report` print them.
pub fn print_verdicts(report: &crate::report::Report, path: &Path) {
    println!("verdicts (details in {}):", path.display());
    for line in report.verdict_lines() {
        println!("  {line}");
    }
}
