//! Claims 3 (Fig. 1) and 5 (Fig. 3) from `train` results.
//!
//! Claim 3 (sweeps of He-scaled initialisers with a predicted output kurtosis,
//! i.e. Fig. 1's), per dataset: Spearman's ρ of test accuracy with ln κ, and the
//! mean accuracy in decades of κ. Verdict: holds if in every dataset ρ is
//! negative beyond two standard errors (ρ < −2/√(n − 1)) and the lowest decade
//! with at least three runs beats the highest one by more than two standard
//! errors of the difference; holds in part if ρ is significantly negative in
//! some dataset; otherwise it does not hold at this scale.
//!
//! Claim 5 (sweeps that include ZerO, i.e. Fig. 3's), at the deepest depth of
//! each sweep, for each of the paper's random initialisers two parts: it fails
//! to train (mean test accuracy below twice chance, 0.2 with ten classes) and
//! it is inferior to ZerO (ZerO's mean is higher by more than two standard
//! errors of the difference over repetitions; with one repetition, any
//! difference counts and the report says the spread is unknown). Holds if every
//! part holds, in part if at least half do, otherwise it does not hold here.

use super::stats::{mean_se, spearman, spearman_threshold};
use super::{Claim, Quote, Runs, Verdict, num};
use crate::experiment::columns as col;
use crate::plot::columns::{floats, floats_or_null, ints, ints_or, strings, strings_or};
use anyhow::Result;
use std::collections::BTreeMap;

pub const COLUMNS: &[&str] = &[
    col::WORK_UNIT,
    col::DATASET,
    col::INIT,
    col::WIDTH,
    col::DEPTH,
    col::REPEAT,
    col::TEST_ACC,
    col::THEORY_KURTOSIS,
    col::KAPPA_W,
    col::RESTARTS,
];

/// Initialisers whose weight kurtosis is a hyper-parameter: their sweeps are
/// the continuum study (its own figure and report section), not Fig. 1.
const CONTINUUM: [&str; 2] = ["he_gennorm", "he_sparse"];

/// Twice chance with ten classes (every dataset initlab reads has ten).
const FAILS_BELOW: f64 = 0.2;
const PAPER_RANDOM: [&str; 5] = [
    "he_normal",
    "glorot_normal",
    "orthogonal",
    "gsm",
    "metainit",
];

/// One trained network.
struct Trained<'a> {
    experiment: &'a str,
    dataset: &'a str,
    init: &'a str,
    width: i64,
    depth: i64,
    acc: f64,
    kurtosis: Option<f64>,
    kappa_w: Option<f64>,
}

fn trained(runs: &Runs) -> Result<Vec<Trained<'_>>> {
    let mut out = Vec::new();
    for (_, e) in runs.of_kind(crate::experiment::Kind::Train) {
        let t = &e.table;
        let (dataset, init) = (strings_or(t, col::DATASET, "")?, strings(t, col::INIT)?);
        let (width, depth, acc) = (
            ints(t, col::WIDTH)?,
            ints(t, col::DEPTH)?,
            floats(t, col::TEST_ACC)?,
        );
        let kurtosis = floats_or_null(t, col::THEORY_KURTOSIS)?;
        let kappa_w = floats_or_null(t, col::KAPPA_W)?;
        for i in 0..t.height() {
            out.push(Trained {
                experiment: &e.name,
                dataset: dataset[i],
                init: init[i],
                width: width[i],
                depth: depth[i],
                acc: acc[i].unwrap_or(f64::NAN),
                kurtosis: kurtosis[i].filter(|k| k.is_finite() && *k > 0.0),
                kappa_w: kappa_w[i],
            });
        }
    }
    Ok(out)
}

static KURTOSIS_CLAIM: Quote = Quote {
    number: 3,
    title: "High kurtosis, poor training (Fig. 1)",
    source: "Section 6.1, Fig. 1",
    statement: "networks whose output kurtosis at initialisation is large cannot be trained effectively: test accuracy against the kurtosis predicted by Proposition 3 (Section 6.1, Fig. 1).",
};

/// Per dataset: (n, ρ, decades (lower edge exponent, mean, SE, count)).
type DatasetCheck = (usize, f64, Vec<(i32, f64, f64, usize)>);

fn kurtosis_check(rows: &[&Trained]) -> DatasetCheck {
    let (acc, lnk): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .map(|r| (r.acc, r.kurtosis.unwrap_or(f64::NAN).ln()))
        .unzip();
    let mut decades: BTreeMap<i32, Vec<f64>> = BTreeMap::new();
    for r in rows {
        decades
            .entry(r.kurtosis.unwrap_or(1.0).log10().floor() as i32)
            .or_default()
            .push(r.acc);
    }
    let bins = decades
        .into_iter()
        .map(|(d, v)| {
            let (m, se) = mean_se(&v);
            (d, m, se, v.len())
        })
        .collect();
    (rows.len(), spearman(&acc, &lnk), bins)
}

fn kurtosis_verdict(checks: &BTreeMap<&str, DatasetCheck>) -> (Verdict, String) {
    let significant = |c: &DatasetCheck| c.1 < -spearman_threshold(c.0);
    let drops = |c: &DatasetCheck| {
        let full: Vec<_> = c.2.iter().filter(|b| b.3 >= 3).collect();
        match (full.first(), full.last()) {
            (Some(lo), Some(hi)) if lo.0 != hi.0 => {
                lo.1 - hi.1 > 2.0 * (lo.2.powi(2) + hi.2.powi(2)).sqrt()
            }
            _ => false,
        }
    };
    let rhos: Vec<String> = checks
        .iter()
        .map(|(d, c)| format!("{d}: ρ = {:.2} (n = {})", c.1, c.0))
        .collect();
    if checks.values().all(|c| significant(c) && drops(c)) {
        (
            Verdict::Holds,
            format!(
                "accuracy falls with the predicted kurtosis ({})",
                rhos.join("; ")
            ),
        )
    } else if checks.values().any(significant) {
        (
            Verdict::HoldsInPart,
            format!(
                "accuracy falls with the kurtosis in some datasets, not all by the rule ({})",
                rhos.join("; ")
            ),
        )
    } else {
        (
            Verdict::DoesNotHoldAtThisScale,
            format!(
                "no significant negative rank correlation ({})",
                rhos.join("; ")
            ),
        )
    }
}

pub fn kurtosis_claim(runs: &Runs) -> Result<Claim> {
    let all = trained(runs)?;
    // Fig. 1's sweeps: every run of the experiment He-scaled with a prediction.
    let mut by_experiment: BTreeMap<&str, Vec<&Trained>> = BTreeMap::new();
    for t in &all {
        by_experiment.entry(t.experiment).or_default().push(t);
    }
    let mut by_dataset: BTreeMap<&str, Vec<&Trained>> = BTreeMap::new();
    for rows in by_experiment.into_values().filter(|r| {
        r.iter()
            .all(|t| t.init.starts_with("he_") && t.kurtosis.is_some())
            && !r.iter().any(|t| CONTINUUM.contains(&t.init))
    }) {
        for t in rows.into_iter().filter(|t| t.acc.is_finite()) {
            by_dataset.entry(t.dataset).or_default().push(t);
        }
    }
    if by_dataset.is_empty() {
        return Ok(KURTOSIS_CLAIM.not_run("Fig. 1 training results (He-scaled initialisers alone)"));
    }
    let checks: BTreeMap<&str, DatasetCheck> = by_dataset
        .iter()
        .map(|(d, rows)| (*d, kurtosis_check(rows)))
        .collect();
    let (verdict, why) = kurtosis_verdict(&checks);
    let mut measured = vec!["| dataset | runs | Spearman ρ (accuracy, ln κ) | 2 SE under independence | mean test accuracy by decade of predicted κ (± SE, runs) |".to_string(), "|---|---|---|---|---|".into()];
    for (d, (n, rho, bins)) in &checks {
        let b: Vec<String> = bins
            .iter()
            .map(|(e, m, se, k)| format!("10^{e}–10^{}: {:.3} ± {:.3} ({k})", e + 1, m, se))
            .collect();
        measured.push(format!(
            "| {d} | {n} | {rho:.3} | {:.3} | {} |",
            spearman_threshold(*n),
            b.join("; ")
        ));
    }
    let headline = checks
        .iter()
        .map(|(d, c)| format!("{d}: ρ = {:.2} (n = {})", c.1, c.0))
        .collect::<Vec<_>>()
        .join("; ");
    Ok(KURTOSIS_CLAIM.checked(
        (verdict, why),
        headline,
        measured,
        runs.figures(crate::plot::figure::FIG1),
    ))
}

static DEPTH_CLAIM: Quote = Quote {
    number: 5,
    title: "Random inits fail deep, ZerO trains (Fig. 3)",
    source: "Section 6.3, Fig. 3",
    statement: "\"all random initialization methods fail to train in very deep regimes and are inferior to ZerO, which does not suffer from the problems with empirical variance.\" (Section 6.3)",
};

/// Mean, SE and count of accuracy per init at one depth of one sweep.
type AtDepth<'a> = BTreeMap<&'a str, (f64, f64, usize)>;

fn at_depth<'a>(rows: &[&Trained<'a>], depth: i64) -> AtDepth<'a> {
    let mut by_init: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.depth == depth && r.acc.is_finite())
    {
        by_init.entry(r.init).or_default().push(r.acc);
    }
    by_init
        .into_iter()
        .map(|(i, v)| {
            let (m, se) = mean_se(&v);
            (i, (m, se, v.len()))
        })
        .collect()
}

/// The parts of claim 5 at one sweep's deepest depth: (what, holds).
fn depth_parts(deepest: &AtDepth) -> Vec<(String, bool)> {
    let Some(&(zm, zse, zn)) = deepest.get("zero") else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    for (init, &(m, se, n)) in deepest.iter().filter(|(i, _)| PAPER_RANDOM.contains(i)) {
        parts.push((
            format!("{init} fails (mean {} < {FAILS_BELOW})", num(m)),
            m < FAILS_BELOW,
        ));
        let margin = if n > 1 && zn > 1 {
            2.0 * (se * se + zse * zse).sqrt()
        } else {
            0.0
        };
        parts.push((
            format!(
                "{init} below ZerO by more than {} ({} vs {})",
                num(margin),
                num(m),
                num(zm)
            ),
            zm - m > margin,
        ));
    }
    parts
}

pub fn depth_claim(runs: &Runs, observations: &mut Vec<String>) -> Result<Claim> {
    let all = trained(runs)?;
    observe_restarts(runs, observations)?;
    let mut sweeps: BTreeMap<(&str, &str, i64), Vec<&Trained>> = BTreeMap::new();
    for t in &all {
        sweeps
            .entry((t.experiment, t.dataset, t.width))
            .or_default()
            .push(t);
    }
    sweeps.retain(|_, rows| rows.iter().any(|r| r.init == "zero"));
    if sweeps.is_empty() {
        return Ok(DEPTH_CLAIM.not_run("Fig. 3 training results (a depth sweep with ZerO)"));
    }
    let mut parts = Vec::new();
    let mut measured = Vec::new();
    for ((experiment, dataset, width), rows) in &sweeps {
        let mut depths: Vec<i64> = rows.iter().map(|r| r.depth).collect();
        depths.sort_unstable();
        depths.dedup();
        let deepest = *depths.last().expect("a sweep has rows");
        measured.push(format!("\n{experiment}, {dataset}, width {width}: mean test accuracy ± SE over repetitions (n):\n"));
        let shown: Vec<i64> = depths.iter().rev().take(2).rev().copied().collect();
        let tables: Vec<AtDepth> = shown.iter().map(|&d| at_depth(rows, d)).collect();
        measured.push(format!(
            "| initialiser | {} |",
            shown
                .iter()
                .map(|d| format!("depth {d}"))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        measured.push(format!("|---|{}", "---|".repeat(shown.len())));
        let mut inits: Vec<&str> = tables.iter().flat_map(|t| t.keys().copied()).collect();
        inits.sort_by_key(|i| crate::plot::columns::init_rank(i));
        inits.dedup();
        for init in inits {
            let cells: Vec<String> = tables
                .iter()
                .map(|t| {
                    t.get(init)
                        .map_or("–".into(), |(m, se, n)| format!("{m:.3} ± {se:.3} ({n})"))
                })
                .collect();
            measured.push(format!("| {init} | {} |", cells.join(" | ")));
        }
        let last = at_depth(rows, deepest);
        for (what, holds) in depth_parts(&last) {
            parts.push((format!("{experiment} depth {deepest}: {what}"), holds));
        }
        if let (Some(z), Some(star)) = (last.get("zero"), last.get("zero_star")) {
            observations.push(format!(
                "{experiment} ({dataset}, width {width}, depth {deepest}): ZerO* reaches mean test accuracy {:.3} where ZerO reaches {:.3}. ZerO* differs only in a random first layer, so what ZerO's first layer passes on (the first input pixels) decides its result.",
                star.0, z.0
            ));
        }
    }
    if parts.is_empty() {
        return Ok(
            DEPTH_CLAIM.not_run("a random initialiser of the paper beside ZerO in a depth sweep")
        );
    }
    let (verdict, why, headline) = super::parts_verdict(parts.iter().map(|p| (p.0.as_str(), p.1)));
    Ok(DEPTH_CLAIM.checked(
        (verdict, why),
        headline,
        measured,
        runs.figures(crate::plot::figure::FIG3),
    ))
}

/// Beyond the paper: the sweeps of he_gennorm and he_sparse (weight kurtosis
/// κ_w as a continuous axis). If Proposition 3's output kurtosis is what decides
/// trainability, accuracy falls with it whatever κ_w, and two laws of equal κ_w
/// train alike at every depth. Markdown lines and figures; empty when no such
/// sweep ran.
pub fn continuum(runs: &Runs) -> Result<(Vec<String>, Vec<std::path::PathBuf>)> {
    let all = trained(runs)?;
    let mut by_experiment: BTreeMap<(&str, &str), Vec<&Trained>> = BTreeMap::new();
    for t in all.iter().filter(|t| t.acc.is_finite()) {
        by_experiment
            .entry((t.experiment, t.dataset))
            .or_default()
            .push(t);
    }
    by_experiment.retain(|_, rows| rows.iter().any(|t| CONTINUUM.contains(&t.init)));
    let mut md = Vec::new();
    for ((experiment, dataset), rows) in &by_experiment {
        let with_k: Vec<&&Trained> = rows.iter().filter(|t| t.kurtosis.is_some()).collect();
        let acc: Vec<f64> = with_k.iter().map(|t| t.acc).collect();
        let lnk: Vec<f64> = with_k
            .iter()
            .map(|t| t.kurtosis.unwrap_or(f64::NAN).ln())
            .collect();
        let laws: BTreeMap<String, Vec<&&Trained>> =
            rows.iter().fold(BTreeMap::new(), |mut m, t| {
                m.entry(format!(
                    "{} (κ_w = {})",
                    t.init,
                    num(t.kappa_w.unwrap_or(f64::NAN))
                ))
                .or_insert_with(Vec::new)
                .push(t);
                m
            });
        md.push(format!(
            "{experiment} ({dataset}): {} laws of the weights, {} runs; Spearman ρ of test accuracy with ln(predicted output kurtosis) = {:.3} (2 SE under independence: {:.3}).",
            laws.len(),
            acc.len(),
            spearman(&acc, &lnk),
            spearman_threshold(acc.len())
        ));
        md.extend(equal_kappa_pairs(&laws));
    }
    let drawn = if md.is_empty() {
        Vec::new()
    } else {
        runs.figures(crate::plot::figure::KURTOSIS_CONTINUUM)
    };
    Ok((md, drawn))
}

/// For each two laws with the same κ_w: at how many depths their mean
/// accuracies agree within two standard errors of the difference.
fn equal_kappa_pairs(laws: &BTreeMap<String, Vec<&&Trained>>) -> Vec<String> {
    let mut out = Vec::new();
    let names: Vec<&String> = laws.keys().collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let (ra, rb) = (&laws[*a], &laws[*b]);
            let (ka, kb) = (
                ra[0].kappa_w.unwrap_or(f64::NAN),
                rb[0].kappa_w.unwrap_or(f64::NAN),
            );
            if ra[0].init == rb[0].init || (ka - kb).abs() > 1e-9 * ka.abs() {
                continue;
            }
            let mut depths: Vec<i64> = ra.iter().map(|t| t.depth).collect();
            depths.sort_unstable();
            depths.dedup();
            let (mut agree, mut compared) = (0, 0);
            for d in depths {
                let at = |r: &Vec<&&Trained>| {
                    r.iter()
                        .filter(|t| t.depth == d)
                        .map(|t| t.acc)
                        .collect::<Vec<f64>>()
                };
                let (va, vb) = (at(ra), at(rb));
                if va.len() < 2 || vb.len() < 2 {
                    continue;
                }
                let ((ma, sa), (mb, sb)) = (mean_se(&va), mean_se(&vb));
                compared += 1;
                if (ma - mb).abs() <= 2.0 * (sa * sa + sb * sb).sqrt() {
                    agree += 1;
                }
            }
            out.push(format!(
                "- {a} and {b}: mean accuracies agree within 2 SE at {agree} of {compared} depths."
            ));
        }
    }
    out
}

fn observe_restarts(runs: &Runs, out: &mut Vec<String>) -> Result<()> {
    for (_, e) in runs.of_kind(crate::experiment::Kind::Train) {
        let t = &e.table;
        let (init, restarts) = (strings(t, col::INIT)?, ints_or(t, col::RESTARTS, 0)?);
        let meta: Vec<i64> = (0..t.height())
            .filter(|&i| init[i] == "metainit")
            .map(|i| restarts[i])
            .collect();
        if meta.iter().any(|&r| r > 0) {
            out.push(format!(
                "{}: {} of {} MetaInit-initialised networks degenerated during MetaInit and were restarted ({} restarts in all) before training.",
                e.name,
                meta.iter().filter(|&&r| r > 0).count(),
                meta.len(),
                meta.iter().sum::<i64>()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<'a>(init: &'a str, depth: i64, acc: f64, kurtosis: Option<f64>) -> Trained<'a> {
        Trained {
            experiment: "e",
            dataset: "d",
            init,
            width: 10,
            depth,
            acc,
            kurtosis,
            kappa_w: None,
        }
    }

    #[test]
    fn accuracy_falling_with_kurtosis_holds_and_flat_accuracy_does_not() {
        // Ten runs per decade 10^0..10^3, accuracy 0.9 − 0.2·decade ± 0.01.
        let rows: Vec<Trained> = (0..40)
            .map(|i| {
                run(
                    "he_normal",
                    0,
                    0.9 - 0.2 * (i / 10) as f64 + 0.01 * (i % 3) as f64,
                    Some(2.0 * 10f64.powi(i / 10)),
                )
            })
            .collect();
        let check = kurtosis_check(&rows.iter().collect::<Vec<_>>());
        assert_eq!(check.2.len(), 4);
        assert!(check.1 < -0.9, "{}", check.1);
        assert_eq!(
            kurtosis_verdict(&BTreeMap::from([("d", check)])).0,
            Verdict::Holds
        );
        let flat: Vec<Trained> = (0..40)
            .map(|i| {
                run(
                    "he_normal",
                    0,
                    0.5 + 0.01 * (i % 2) as f64,
                    Some(2.0 * 10f64.powi(i / 10)),
                )
            })
            .collect();
        let check = kurtosis_check(&flat.iter().collect::<Vec<_>>());
        assert_eq!(
            kurtosis_verdict(&BTreeMap::from([("d", check)])).0,
            Verdict::DoesNotHoldAtThisScale
        );
    }

    #[test]
    fn laws_of_equal_weight_kurtosis_are_compared_depth_by_depth() {
        let law = |init: &'static str, kw: f64, acc: [f64; 4]| -> Vec<Trained<'static>> {
            // Depths 0 and 10, two repetitions each.
            (0..4)
                .map(|i| Trained {
                    kappa_w: Some(kw),
                    ..run(init, 10 * (i / 2), acc[i as usize], None)
                })
                .collect()
        };
        let a = law("he_gennorm", 6.0, [0.80, 0.82, 0.50, 0.52]);
        let b = law("he_sparse", 6.0, [0.81, 0.81, 0.20, 0.22]);
        let c = law("he_sparse", 12.0, [0.1, 0.1, 0.1, 0.1]);
        let mut laws: BTreeMap<String, Vec<&Trained>> = BTreeMap::new();
        for (name, rows) in [("a", &a), ("b", &b), ("c", &c)] {
            laws.insert(name.into(), rows.iter().collect());
        }
        let laws: BTreeMap<String, Vec<&&Trained>> = laws
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().collect()))
            .collect();
        // Only a and b share κ_w = 6; they agree at depth 0 (0.81 vs 0.81), not at
        // depth 10 (0.51 vs 0.21, SE 0.01 each).
        assert_eq!(
            equal_kappa_pairs(&laws),
            ["- a and b: mean accuracies agree within 2 SE at 1 of 2 depths."]
        );
    }

    #[test]
    fn depth_parts_need_failure_and_a_gap_to_zero_beyond_the_spread() {
        let rows = [
            run("zero", 100, 0.80, None),
            run("zero", 100, 0.82, None),
            run("he_normal", 100, 0.10, None),
            run("he_normal", 100, 0.12, None),
            run("gsm", 100, 0.79, None),
            run("gsm", 100, 0.83, None),
        ];
        let parts = depth_parts(&at_depth(&rows.iter().collect::<Vec<_>>(), 100));
        let holds: Vec<bool> = parts.iter().map(|p| p.1).collect();
        // gsm: fails no, below ZerO no (0.81 vs 0.81); he_normal: both yes.
        assert_eq!(holds, [false, false, true, true], "{parts:?}");
    }
}
