//! `initlab theory`: the theory table of one network, printed or written as Parquet.

use crate::cli::TheoryArgs;
use crate::experiment::PointKey;
use crate::experiment::theory::TheoryPoint;
use crate::results::write_parquet;
use anyhow::{Result, bail};
use polars::prelude::*;
use std::collections::BTreeMap;

pub fn run(args: TheoryArgs) -> Result<()> {
    let depth = match args.depth {
        Some(d) if d < 0 => bail!("--depth must be >= 0 (the number of layers), got {d}"),
        Some(d) => Some(d as usize),
        None => None,
    };
    if args.width.is_none() && args.widths.is_none() {
        bail!(
            "give --width W --depth D (a constant width) or --widths W1,W2,... (a width profile)"
        );
    }
    let point = TheoryPoint {
        width: args.width,
        depth,
        widths: args.widths,
        slope: args.slope,
        kappa_w: args.kappa_w,
        kappa0: args.kappa0,
        c0: args.c0,
        sigma2: args.sigma2,
        n: args.n,
        threshold: args.threshold,
    };
    // Validated first, so that a bad value gets the message naming its valid range.
    point.params()?;
    let unit = point.key()?.id();
    let table = point.rows(&unit)?;
    let mut df = table.to_dataframe()?;
    match args.out {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
                && !parent.is_dir()
            {
                bail!(
                    "cannot write {}: directory {} does not exist",
                    path.display(),
                    parent.display()
                );
            }
            let meta = BTreeMap::from([
                (
                    "initlab_version".to_string(),
                    env!("CARGO_PKG_VERSION").to_string(),
                ),
                (
                    "command".to_string(),
                    std::env::args().collect::<Vec<_>>().join(" "),
                ),
            ]);
            write_parquet(&path, &mut df, &meta)?;
            eprintln!("wrote {} rows to {}", df.height(), path.display());
        }
        None => print!("{}", format_table(&df)?),
    }
    Ok(())
}

/// A plain aligned text table of the main columns.
pub fn format_table(df: &DataFrame) -> Result<String> {
    let cols = [
        "layer",
        "width",
        "kurtosis",
        "cov_sq",
        "lambda_max",
        "var_q50",
        "var_q90",
        "var_q99",
        "var_q999",
        "p_var_below",
    ];
    let mut out = String::new();
    for c in cols {
        out.push_str(&format!("{c:>13}"));
    }
    out.push('\n');
    for i in 0..df.height() {
        for c in cols {
            let col = df.column(c)?;
            let cell = match col.dtype() {
                DataType::Int64 => format!("{}", col.i64()?.get(i).unwrap_or_default()),
                _ => match col.f64()?.get(i) {
                    Some(v) if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) => format!("{v:.4e}"),
                    Some(v) => format!("{v:.6}"),
                    None => "-".to_string(),
                },
            };
            out.push_str(&format!("{cell:>13}"));
        }
        out.push('\n');
    }
    Ok(out)
}
