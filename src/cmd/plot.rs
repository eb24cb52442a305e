//! `initlab plot RUN_DIR...`: draws each run directory's figures into
//! `RUN_DIR/figures/` (PNG and SVG) and prints the files and a summary.

use crate::cli::PlotArgs;
use crate::plot::plot_and_summarise;
use anyhow::Result;

pub fn run(args: PlotArgs) -> Result<()> {
    for dir in &args.run_dirs {
        let (files, lines) = plot_and_summarise(dir)?;
        println!("{}:", dir.display());
        if files.is_empty() {
            println!("  no figure applies to these results");
        }
        for file in &files {
            println!("  wrote {}", file.display());
        }
        for line in &lines {
            println!("  {line}");
        }
    }
    Ok(())
}
