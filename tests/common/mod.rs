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

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, bytes).unwrap();
    e.finish().unwrap()
}

/// Pseudo-random bytes (deterministic).
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// Writes a small MNIST-format dataset (train n, test m) into `dir`, gzipped or not.
pub fn write_mnist(dir: &Path, n: usize, m: usize, gzip: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let files = [
        (
            "train-images-idx3-ubyte",
            initlab::data::idx::encode(&[n, 28, 28], &bytes(n * 784, 1)),
        ),
        (
            "train-labels-idx1-ubyte",
            initlab::data::idx::encode(
                &[n],
                &bytes(n, 2).iter().map(|b| b % 10).collect::<Vec<_>>(),
            ),
        ),
        (
            "t10k-images-idx3-ubyte",
            initlab::data::idx::encode(&[m, 28, 28], &bytes(m * 784, 3)),
        ),
        (
            "t10k-labels-idx1-ubyte",
            initlab::data::idx::encode(
                &[m],
                &bytes(m, 4).iter().map(|b| b % 10).collect::<Vec<_>>(),
            ),
        ),
    ];
    for (name, data) in files {
        if gzip {
            std::fs::write(dir.join(format!("{name}.gz")), gz(&data)).unwrap();
        } else {
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
}

/// SciPy's `mstats.mquantiles` quantile with its default plotting positions
/// (alphap = betap = 0.4), written here apart from the library so the test
/// checks it rather than repeats it. In the form of R's quantile types: the p
/// quantile sits at the 1-based position n·p + m, m = 0.4 + 0.2·p, clamped to
/// [1, n], interpolating linearly between the order statistics around it.
pub fn authors_quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let n = sorted.len() as f64;
    let position = (n * p + 0.4 + 0.2 * p).clamp(1.0, n);
    let whole = position.floor();
    let below = sorted[whole as usize - 1];
    if position == whole {
        below
    } else {
        below + (position - whole) * (sorted[whole as usize] - below)
    }
}

/// Whether a test that needs `what` can run here. Missing, it fails under CI
/// (`.ci/run` sets INITLAB_CI and installs everything), so that CI never passes
/// a test it did not run; elsewhere it prints why it skipped and `how` to get it.
pub fn present_or_skip(present: bool, what: &str, how: &str) -> bool {
    if !present {
        assert!(
            std::env::var_os("INITLAB_CI").is_none(),
            "{what} is missing, and CI (INITLAB_CI is set) must run this test: {how}"
        );
        eprintln!("skipped: {what} is missing here ({how})");
    }
    present
}
