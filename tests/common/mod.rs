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

/// Writes `text` as `dir/NAME.yaml`, runs it into `dir/NAME` with `extra`
/// arguments, which must succeed, and returns the run directory.
pub fn run_config(dir: &Path, name: &str, text: &str, extra: &[&str]) -> PathBuf {
    let cfg = write(dir, &format!("{name}.yaml"), text);
    let out = dir.join(name);
    let mut args = vec!["run", s(&cfg), "--out", s(&out)];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

/// Runs `text` as a config (`dir/CASE.yaml`) into a fresh `--out` with `extra`
/// arguments and checks the refusal: non-zero exit, one error line containing
/// every one of `expected`, and no run directory left.
pub fn assert_refused(dir: &Path, case: &str, text: &str, extra: &[&str], expected: &[&str]) {
    let cfg = write(dir, &format!("{case}.yaml"), text);
    let out = dir.join(format!("{case}-out"));
    let mut args = vec!["run", s(&cfg), "--out", s(&out)];
    args.extend_from_slice(extra);
    let result = run(&args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "{case}: should have been refused, but ran:\n{stderr}"
    );
    for fragment in expected {
        assert!(
            stderr.contains(fragment),
            "{case}: expected `{fragment}` in:\n{stderr}"
        );
    }
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "{case}: one clear error line, got:\n{stderr}"
    );
    assert!(
        !out.exists(),
        "{case}: no run directory may be left (a unit ran or the refusal came late)"
    );
}

/// The arguments of `initlab data fetch DATASET` from `mirror` into `data_dir`, then `extra`.
pub fn fetch_args<'a>(
    dataset: &'a str,
    mirror: &'a str,
    data_dir: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "data",
        "fetch",
        dataset,
        "--mirror",
        mirror,
        "--data-dir",
        s(data_dir),
    ];
    args.extend_from_slice(extra);
    args
}

/// Asserts that `text` contains every one of `fragments`.
pub fn assert_mentions(text: &str, fragments: &[&str]) {
    for f in fragments {
        assert!(text.contains(f), "`{f}` not in:\n{text}");
    }
}

/// A JSON file (a run directory's metadata), parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
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

/// Asserts that `df` has every one of `columns`; `what` names it in the message.
pub fn assert_has_columns(df: &polars::prelude::DataFrame, what: &str, columns: &[&str]) {
    for c in columns {
        assert!(df.column(c).is_ok(), "{what} lacks {c}");
    }
}

/// Column `value` of `other` equals the `reference`'s row by row within 1e-4
/// (relative): float sums in another order, not other numbers; `how` names the run.
pub fn assert_column_agrees(
    reference: &polars::prelude::DataFrame,
    other: &polars::prelude::DataFrame,
    value: &str,
    how: &str,
) {
    let (a, b) = (f64_column(reference, value), f64_column(other, value));
    assert_eq!(a.len(), b.len(), "{how}: rows");
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs().max(1e-12),
            "{how}: {value} {x} vs {y}"
        );
    }
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
    use initlab::data::idx::encode;
    std::fs::create_dir_all(dir).unwrap();
    let images = |count: usize, seed| encode(&[count, 28, 28], &bytes(count * 784, seed));
    let labels = |count: usize, seed| {
        let digits: Vec<u8> = bytes(count, seed).iter().map(|b| b % 10).collect();
        encode(&[count], &digits)
    };
    let files = [
        ("train-images-idx3-ubyte", images(n, 1)),
        ("train-labels-idx1-ubyte", labels(n, 2)),
        ("t10k-images-idx3-ubyte", images(m, 3)),
        ("t10k-labels-idx1-ubyte", labels(m, 4)),
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
