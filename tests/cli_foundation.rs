//! End-to-end tests of the foundation: `initlab theory`, `initlab run` with YAML
//! configs and sweeps, run directories, resumption, and the refusal of bad input.

mod common;
use common::*;

/// An independent implementation of Proposition 3 for the test: the 3×3 matrices in
/// absolute units (σ⁴ explicit), multiplied out step by step.
fn reference_kurtosis(
    widths: &[usize],
    slope: f64,
    kappa_w: f64,
    kappa0: f64,
    c0_over_sigma4: f64,
    sigma2: f64,
) -> Vec<(f64, f64)> {
    let s4 = sigma2 * sigma2;
    let mut k = [kappa0, c0_over_sigma4 * s4, 1.0];
    let mut out = vec![(k[0], k[1] / s4)];
    for &w in widths {
        let w = w as f64;
        let f = 2.0 * (slope.powi(4) + 1.0) / (w * (slope * slope + 1.0).powi(2));
        let a = [
            [f * kappa_w, 3.0 * (w - 1.0) / (w * s4), 3.0 * (w - 1.0) / w],
            [f * s4, (w - 1.0) / w, -s4 / w],
            [0.0, 0.0, 1.0],
        ];
        let next = [
            a[0][0] * k[0] + a[0][1] * k[1] + a[0][2] * k[2],
            a[1][0] * k[0] + a[1][1] * k[1] + a[1][2] * k[2],
            1.0,
        ];
        k = next;
        out.push((k[0], k[1] / s4));
    }
    out
}

/// The header `initlab theory` prints: the columns of its table, each
/// right-aligned in 13 characters, every one of them a column of the Parquet file.
const THEORY_HEADER: &str = "        layer        width     kurtosis       cov_sq   lambda_max      var_q50      var_q90      var_q99     var_q999  p_var_below";

#[test]
fn theory_table_matches_an_independent_recursion() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    for (width, depth, slope, kw, k0, c0) in [
        (10usize, 100usize, 0.0, 3.0, 3.28, 0.10),
        (3, 40, 0.3, 1.8, 3.95, 0.71),
        (2, 7, -0.5, 1.0, 1.0, -0.5),
    ] {
        ok(&[
            "theory",
            "--width",
            &width.to_string(),
            "--depth",
            &depth.to_string(),
            "--slope",
            &slope.to_string(),
            "--kappa-w",
            &kw.to_string(),
            "--kappa0",
            &k0.to_string(),
            "--c0",
            &c0.to_string(),
            "--sigma2",
            "2.5",
            "--out",
            s(&out),
        ]);
        let df = initlab::results::read_parquet(&out).unwrap();
        assert_eq!(df.height(), depth + 1);
        let printed: Vec<&str> = THEORY_HEADER.split_whitespace().collect();
        assert_has_columns(&df, "the theory table", &printed);
        let kurt = f64_column(&df, "kurtosis");
        let cov = f64_column(&df, "cov_sq");
        let reference = reference_kurtosis(&vec![width; depth], slope, kw, k0, c0, 2.5);
        for l in 0..=depth {
            let (rk, rc) = reference[l];
            assert!(
                (kurt[l] - rk).abs() <= 1e-9 * rk.abs(),
                "layer {l}: {} vs {rk}",
                kurt[l]
            );
            assert!(
                (cov[l] - rc).abs() <= 1e-9 * rc.abs().max(1.0),
                "layer {l}: {} vs {rc}",
                cov[l]
            );
        }
        assert_eq!(i64_column(&df, "width"), vec![width as i64; depth + 1]);
    }
}

#[test]
fn theory_width_profile_and_printing() {
    let text = ok(&["theory", "--widths", "2,5,3", "--kappa0", "3", "--c0", "0"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], THEORY_HEADER);
    // step 1 with width 2 from Gaussian input: κ₁ = 10.5 (worked by hand in the unit tests)
    assert!(lines[2].contains("10.5"), "{text}");
}

#[test]
fn theory_rejects_bad_input_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&["theory", "--width", "10", "--depth", "-3"]);
    assert_mentions(&e, &["--depth", ">= 0"]);
    let e = fails(&["theory", "--width", "0", "--depth", "3"]);
    assert!(e.contains("width"), "{e}");
    let e = fails(&["theory", "--widths", "4,0,2"]);
    assert!(e.contains("width"), "{e}");
    let e = fails(&["theory", "--width", "3", "--depth", "3", "--kappa-w", "0.5"]);
    assert!(e.contains("kappa_w"), "{e}");
    // an output path under a regular file cannot be written
    let file = write(dir.path(), "plain", "x");
    let bad = file.join("t.parquet");
    let e = fails(&["theory", "--width", "3", "--depth", "3", "--out", s(&bad)]);
    assert!(
        e.contains("cannot write") || e.contains("does not exist"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing but the plain file"
    );
}

#[test]
fn bench_refuses_an_unknown_section() {
    let e = fails(&["bench", "--only", "metainit,wide-metanit"]);
    assert_mentions(&e, &["\"wide-metanit\"", "wide-metainit, paper"]);
}

const THEORY_CONFIG: &str =
    "name: sweep\nseed: 3\nkind: theory\nwidth: [2, 10]\ndepth: 20\nkappa_w: [1.0, 1.8, 3.0]\n";

#[test]
fn run_writes_a_run_directory_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "sweep.yaml", THEORY_CONFIG);
    let out = dir.path().join("run");
    let first = run(&["run", s(&cfg), "--out", s(&out)]);
    assert!(first.status.success());
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(err.contains("6 units run"), "{err}");
    for f in [
        "config.yaml",
        "config.resolved.yaml",
        "metadata.json",
        "log.txt",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let meta = read_json(&out.join("metadata.json"));
    for key in [
        "initlab_version",
        "git_commit",
        "libtorch_version",
        "seed",
        "invocations",
    ] {
        assert!(meta.get(key).is_some(), "metadata lacks {key}");
    }
    assert_eq!(meta["seed"], 3);
    // The commit is the checkout's HEAD, marked dirty when the binary's sources
    // differ from it (cargo test has just built it from this tree).
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) {
        let changed = git(&[
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--",
            "src",
            "build.rs",
            "Cargo.toml",
            "Cargo.lock",
            "assets",
        ])
        .unwrap();
        let expected = if changed.is_empty() {
            head
        } else {
            format!("{head}-dirty")
        };
        assert_eq!(meta["git_commit"], expected);
    }
    let inv = &meta["invocations"][0];
    assert_eq!(inv["status"], "complete");
    assert!(inv["threads"].as_i64().unwrap() >= 1);
    assert!(inv["wall_time_s"].as_f64().is_some() && inv["started_at"].as_str().is_some());
    let df = results(&out, &["width", "kappa_w", "layer"]);
    assert_eq!(df.height(), 6 * 21);
    assert_eq!(
        std::fs::read_to_string(out.join("log.txt"))
            .unwrap()
            .lines()
            .count(),
        6
    );

    // Rerunning skips everything; a different config is refused and changes nothing.
    let again = run(&["run", s(&cfg), "--out", s(&out)]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 units run, 6 already done"));
    let changed = write(
        dir.path(),
        "sweep.yaml",
        &THEORY_CONFIG.replace("depth: 20", "depth: 21"),
    );
    let e = fails(&["run", s(&changed), "--out", s(&out)]);
    assert!(e.contains("different config"), "{e}");
    assert_eq!(results(&out, &["width"]).height(), 6 * 21);
}

/// Two width profiles, two slopes and three c₀, without a name.
const PROFILES: &str =
    "kind: theory\nwidths: [[2, 3], [4, 4, 4]]\nslope: [0.0, 0.5]\nc0: [0.0, 0.1, 0.2]\n";

#[test]
fn sweep_expands_the_cartesian_product() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_config(dir.path(), "c", PROFILES, &[]);
    let df = results(&out, &["depth"]);
    // 2 profiles × 2 slopes × 3 c0: rows = 6 × (3 layers) + 6 × (4 layers)
    assert_eq!(df.height(), 6 * 3 + 6 * 4);
    // without --out the run directory is outputs/<file name> when the config has no name
    let default = initlab()
        .current_dir(dir.path())
        .args(["run", s(&dir.path().join("c.yaml"))])
        .output()
        .unwrap();
    assert!(default.status.success());
    assert!(dir.path().join("outputs/c/config.resolved.yaml").exists());
}

#[test]
fn bad_configs_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 9] = [
        ("kind: theory\nwidth: [3\n", "malformed YAML"),
        (
            "kind: theory\nwidth: 3\ndepth: 4\nwidht: 3\n",
            "unknown field `widht`",
        ),
        ("kind: theory\nwidth: 3\ndepth: -4\n", "depth"),
        ("kind: theory\nwidth: 0\ndepth: 4\n", "width"),
        ("kind: theory\nwidth: 3\ndepth: [4, -1]\n", "depth"),
        ("kind: theroy\nwidth: 3\n", "unknown kind `theroy`"),
        (
            "kind: variance\ndataset: synthetic-tiny\ninit: he_nromal\nwidth: 4\ndepth: 2\nnetworks: 3\n",
            "unknown initialiser `he_nromal`",
        ),
        (
            "kind: variance\ndataset: synthetic-tiny\ninit: gsm\nwidth: 5\ndepth: 2\nnetworks: 3\n",
            "even",
        ),
        (
            "kind: variance\ndataset: imagenet\ninit: zero\nwidth: 4\ndepth: 2\nnetworks: 3\n",
            "unknown dataset `imagenet`",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        assert_refused(dir.path(), &format!("bad{i}"), text, &[], &[expected]);
    }
}

#[test]
fn unwritable_output_directory_is_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.yaml", "kind: theory\nwidth: 3\ndepth: 3\n");
    let file = write(dir.path(), "plain", "x");
    let e = fails(&["run", s(&cfg), "--out", s(&file.join("run"))]);
    assert!(e.contains("cannot create run directory"), "{e}");
    let e = fails(&["run", s(&cfg), "--out", s(&file)]);
    assert!(e.contains("not a directory"), "{e}");
    let e = fails(&["run", s(&dir.path().join("missing.yaml"))]);
    assert!(e.contains("cannot read config file"), "{e}");
}
