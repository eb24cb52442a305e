//! `initlab report` end to end: tiny runs of every kind the report reads, and
//! the numbers of REPORT.md checked against values this test computes from the
//! same Parquet tables by its own code.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

const KURTOSIS: &str = "
name: kmc
seed: 3
kind: kurtosis_mc
init: he_normal
width: 4
depth: 6
networks: 300
samples: 32
";

const VARIANCE: &str = "
name: var
seed: 3
kind: variance
dataset: synthetic-tiny
init: [he_normal, glorot_normal, zero]
width: 4
depth: 90
networks: 40
";

const TRAIN: &str = "
name: tr
seed: 3
experiments:
  - name: kurt
    kind: train
    dataset: synthetic-tiny
    init: [he_normal, he_bernoulli]
    width: 4
    depth: [0, 6, 20]
    steps: 15
    batch_size: 32
    repeats: 2
  - name: depth
    kind: train
    dataset: synthetic-tiny
    init: [he_normal, zero]
    width: 4
    depth: [0, 8]
    steps: 15
    batch_size: 32
    repeats: 2
";

const INPUTS: &str = "
name: inputs
seed: 3
kind: input_stats
dataset: synthetic-tiny
samples: 200000
";

fn run_config(out: &Path, name: &str, yaml: &str) {
    let config = write(out, &format!("{name}.yaml"), yaml);
    ok(&[
        "--threads",
        "2",
        "run",
        s(&config),
        "--out",
        s(&out.join("runs").join(name)),
    ]);
}

/// The table rows of the report's section `number` (lines starting with `|`).
fn section_rows(report: &str, number: usize) -> Vec<String> {
    let start = report
        .find(&format!("\n## {number}. "))
        .expect("section present");
    let rest = &report[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    rest[..end]
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| ---"))
        .map(String::from)
        .collect()
}

/// The report's number format: 4 decimals, trailing zeros dropped, scientific far from 1.
fn num(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.3e}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn spearman(x: &[f64], y: &[f64]) -> f64 {
    // Average ranks by brute force: rank = (count below) + (count equal + 1) / 2.
    let rank = |v: &[f64]| -> Vec<f64> {
        v.iter()
            .map(|a| {
                let below = v.iter().filter(|b| *b < a).count() as f64;
                let equal = v.iter().filter(|b| *b == a).count() as f64;
                below + (equal + 1.0) / 2.0
            })
            .collect()
    };
    let (rx, ry) = (rank(x), rank(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

#[test]
fn report_numbers_come_from_the_results_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    for (name, yaml) in [
        ("kmc", KURTOSIS),
        ("var", VARIANCE),
        ("tr", TRAIN),
        ("inputs", INPUTS),
    ] {
        run_config(out, name, yaml);
    }
    let stdout = ok(&["report", s(&out.join("runs"))]);
    let report = std::fs::read_to_string(out.join("runs").join("REPORT.md")).unwrap();
    // One printed verdict line per claim, and the report's path.
    assert!(stdout.contains("REPORT.md"), "{stdout}");
    for n in 1..=6 {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{n}. "))),
            "claim {n} missing:\n{stdout}"
        );
    }

    // Claim 1: one setting, N = networks · samples · width pooled values.
    let rows = section_rows(&report, 1);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[1].contains(&format!("| {} |", num(300.0 * 32.0 * 4.0))),
        "{}",
        rows[1]
    );

    // Claim 3: Spearman's ρ of the Fig. 1 sweep (`kurt`, He-scaled only).
    let df = initlab::results::read_all(&out.join("runs/tr/results/kurt")).unwrap();
    let acc = f64_column(&df, "test_acc");
    let lnk: Vec<f64> = f64_column(&df, "theory_kurtosis")
        .iter()
        .map(|k| k.ln())
        .collect();
    let rho = spearman(&acc, &lnk);
    let rows = section_rows(&report, 3);
    assert!(
        rows[1].starts_with(&format!("| synthetic-tiny | {} | {rho:.3} |", acc.len())),
        "{} vs ρ = {rho}",
        rows[1]
    );

    // Claim 4: the first layer whose 0.9 quantile (authors' rule) is below 10⁻³.
    let var = results(&out.join("runs/var"), &["init", "layer", "network"]);
    let (inits, layers, s2) = (
        str_column(&var, "init"),
        i64_column(&var, "layer"),
        f64_column(&var, "emp_var"),
    );
    let mut by: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
    for i in 0..s2.len() {
        by.entry((inits[i].clone(), layers[i]))
            .or_default()
            .push(s2[i]);
    }
    for init in ["he_normal", "glorot_normal"] {
        let first = (0..=90).find(|&l| {
            let mut v = by[&(init.to_string(), l)].clone();
            v.sort_by(f64::total_cmp);
            authors_quantile(&v, 0.9) < 1e-3
        });
        let expected = format!(
            "- var ({init}, synthetic-tiny): {}",
            first.map_or("never".into(), |l| format!("layer {l}"))
        );
        assert!(
            report.contains(&expected),
            "expected `{expected}` in the report"
        );
    }

    // Claim 6: the exact κ₀ and c₀ as the table has them.
    let inputs = results(&out.join("runs/inputs"), &["dataset"]);
    let (k, c) = (
        f64_column(&inputs, "kappa0_exact")[0],
        f64_column(&inputs, "c0_exact")[0],
    );
    let rows = section_rows(&report, 6);
    assert!(
        rows.iter().any(|r| r.contains(&format!(
            "| {} | {} | {} |",
            num(k),
            num(c),
            num(3.0 * (1.0 + c))
        ))),
        "{rows:?}"
    );
    // Gaussian weights: the exact values satisfy κ₀ = 3(1 + c₀).
    assert!((k - 3.0 * (1.0 + c)).abs() < 1e-9 * k, "{k} vs {c}");
}

#[test]
fn report_refuses_folders_without_runs_and_missing_output_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails(&["report", s(tmp.path())]);
    assert!(
        err.contains("neither a run directory nor a folder of run directories"),
        "{err}"
    );
    let err = fails(&["report", s(&tmp.path().join("absent"))]);
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!tmp.path().join("REPORT.md").exists());
}
