//! Helpers shared by the end-to-end tests: running the binary, temporary run
//! directories, reading results back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The initlab binary built for these tests, with progress bars off.
pub fn initlab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_initlab"));
    c.env("INITLAB_PROGRESS", "0");
    c
}

/// Runs initlab with `args`, returning the output (whatever the exit status).
pub fn run(args: &[&str]) -> Output {
    initlab().args(args).output().expect("initlab runs")
}

/// Runs initlab and panics with its stderr unless it succeeds.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "initlab {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs initlab expecting failure; returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "initlab {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// All results of a run directory, sorted by the given columns.
pub fn results(dir: &Path, sort_by: &[&str]) -> polars::prelude::DataFrame {
    let df = initlab::results::read_all(&dir.join("results")).unwrap();
    let by: Vec<String> = sort_by.iter().map(|c| c.to_string()).collect();
    df.sort(by, Default::default()).unwrap()
}

pub fn f64_column(df: &polars::prelude::DataFrame, name: &str) -> Vec<f64> {
    df.column(name)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect()
}

pub fn i64_column(df: &polars::prelude::DataFrame, name: &str) -> Vec<i64> {
    df.column(name)
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect()
}

pub fn str_column(df: &polars::prelude::DataFrame, name: &str) -> Vec<String> {
    df.column(name)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect()
}
