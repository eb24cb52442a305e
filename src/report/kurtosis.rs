//! Claim 1 (Proposition 3, Theorem 1): the output kurtosis of He networks grows
//! exponentially with depth at the rate of Lemma 4's largest eigenvalue, checked
//! against `kurtosis_mc` simulations.
//!
//! Per simulated setting (initialiser, width, slope), layer by layer:
//! - the simulation *follows* the recursion up to the layer L* from which the
//!   recursion stays above the simulation's 95% interval for good (a sample
//!   kurtosis is dominated by the rare networks of the heavy tail, so with a
//!   finite number of networks it falls short of a fast-growing truth);
//! - over layers 1..L*, the share of layers whose recursion value lies within
//!   three standard errors of the estimate (`within_3se`), and the growth per
//!   layer, exp(slope of ln κ on l), measured and predicted on the same layers;
//! - the hard bound: a kurtosis estimated from N pooled values cannot exceed N,
//!   and the first layer where the recursion passes N.
//!
//! Verdict: holds if in every setting the simulation follows at least 5 layers,
//! within_3se ≥ 0.9 there and the two growth rates agree within 10%; holds in
//! part if every setting has within_3se ≥ 0.5 (the recursion is right where a
//! simulation can see it, but its growth beyond L* is not observable at this
//! number of networks); otherwise it does not hold at this scale.

use super::stats::ols_slope;
use super::{Claim, Quote, Runs, Verdict, num};
use crate::experiment::columns as col;
use crate::plot::columns::{floats, ints, strings};
use anyhow::Result;
use std::collections::BTreeMap;

pub const COLUMNS: &[&str] = &[
    col::INIT,
    col::WIDTH,
    col::SLOPE,
    col::NETWORKS,
    col::SAMPLES,
    col::LAYER,
    col::KURTOSIS,
    col::KURTOSIS_SE,
    col::KURTOSIS_HI,
    col::KAPPA_W,
    col::THEORY_KURTOSIS,
];

static CLAIM: Quote = Quote {
    number: 1,
    title: "Kurtosis grows as the recursion says",
    source: "Proposition 3, Theorem 1, Lemma 4",
    statement: "\"we prove that the kurtosis of the output distribution grows to infinity with increasing depth\" (Section 1); the growth per layer tends to the largest eigenvalue of the step matrix (Lemma 4, Theorem 1).",
};

/// One simulated setting's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub label: String,
    /// Layers 0..=depth.
    pub layers: usize,
    /// The first layer from which the recursion stays above the 95% interval.
    pub follows_until: Option<usize>,
    pub within_3se: f64,
    pub rate_measured: f64,
    pub rate_predicted: f64,
    pub lambda_max: f64,
    pub pooled: f64,
    pub bound_layer: Option<usize>,
}

struct Rows {
    layer: Vec<usize>,
    kurt: Vec<f64>,
    se: Vec<f64>,
    hi: Vec<f64>,
    theory: Vec<f64>,
}

/// Compares one setting's rows (sorted by layer).
fn compare(label: String, rows: &Rows, lambda_max: f64, pooled: f64) -> Setting {
    let n = rows.layer.len();
    // The first index from which theory > hi at every deeper layer.
    let mut start = n;
    while start > 0 && rows.theory[start - 1] > rows.hi[start - 1] {
        start -= 1;
    }
    let follows_until = (start < n).then(|| rows.layer[start]);
    let followed: Vec<usize> = (0..start).filter(|&i| rows.layer[i] >= 1).collect();
    let inside = followed
        .iter()
        .filter(|&&i| (rows.kurt[i] - rows.theory[i]).abs() <= 3.0 * rows.se[i])
        .count();
    let within_3se = inside as f64 / followed.len().max(1) as f64;
    let x: Vec<f64> = followed.iter().map(|&i| rows.layer[i] as f64).collect();
    let rate = |v: &Vec<f64>| {
        let ln: Vec<f64> = followed.iter().map(|&i| v[i].ln()).collect();
        if followed.len() >= 2 {
            ols_slope(&x, &ln).exp()
        } else {
            f64::NAN
        }
    };
    Setting {
        label,
        layers: n,
        follows_until,
        within_3se,
        rate_measured: rate(&rows.kurt),
        rate_predicted: rate(&rows.theory),
        lambda_max,
        pooled,
        bound_layer: (0..n)
            .find(|&i| rows.theory[i] > pooled)
            .map(|i| rows.layer[i]),
    }
}

fn followed_layers(s: &Setting) -> usize {
    s.follows_until.unwrap_or(s.layers).saturating_sub(1)
}

/// The verdict rule of the module's documentation.
pub fn verdict(settings: &[Setting]) -> (Verdict, String) {
    if settings.is_empty() {
        return (Verdict::NotRun, "no kurtosis_mc results".into());
    }
    let good = |s: &Setting| {
        followed_layers(s) >= 5
            && s.within_3se >= 0.9
            && (s.rate_measured / s.rate_predicted - 1.0).abs() <= 0.1
    };
    let shortest = settings.iter().map(followed_layers).min().unwrap_or(0);
    let worst = settings.iter().map(|s| s.within_3se).fold(1.0, f64::min);
    if settings.iter().all(good) {
        (
            Verdict::Holds,
            format!(
                "in all {} settings the simulation matches the recursion within 3 SE on ≥ 90% of the layers it can follow (at least {shortest}) and grows at its rate within 10%",
                settings.len()
            ),
        )
    } else if worst >= 0.5 {
        (
            Verdict::HoldsInPart,
            format!(
                "the recursion matches the simulation (≥ {:.0}% of layers within 3 SE) where a simulation can follow it, at least {shortest} layers; deeper, the sample kurtosis of this many networks falls short of the exponential growth",
                100.0 * worst
            ),
        )
    } else {
        (
            Verdict::DoesNotHoldAtThisScale,
            format!(
                "in some setting only {:.0}% of the followed layers agree within 3 SE",
                100.0 * worst
            ),
        )
    }
}

fn settings(runs: &Runs) -> Result<Vec<Setting>> {
    let mut out = Vec::new();
    for (_, e) in runs.of_kind(crate::experiment::Kind::KurtosisMc) {
        let t = &e.table;
        let (init, width, slope) = (
            strings(t, col::INIT)?,
            ints(t, col::WIDTH)?,
            floats(t, col::SLOPE)?,
        );
        let (networks, samples, layer) = (
            ints(t, col::NETWORKS)?,
            ints(t, col::SAMPLES)?,
            ints(t, col::LAYER)?,
        );
        let (k, se, hi) = (
            floats(t, col::KURTOSIS)?,
            floats(t, col::KURTOSIS_SE)?,
            floats(t, col::KURTOSIS_HI)?,
        );
        let (kw, th) = (floats(t, col::KAPPA_W)?, floats(t, col::THEORY_KURTOSIS)?);
        let mut groups: BTreeMap<(String, i64, String), Vec<usize>> = BTreeMap::new();
        for i in 0..t.height() {
            let key = (init[i].to_string(), width[i], num(slope[i].unwrap_or(0.0)));
            groups.entry(key).or_default().push(i);
        }
        for ((init_name, w, a), mut rows) in groups {
            rows.sort_by_key(|&i| layer[i]);
            let get =
                |c: &Vec<Option<f64>>| rows.iter().map(|&i| c[i].unwrap_or(f64::NAN)).collect();
            let r = Rows {
                layer: rows.iter().map(|&i| layer[i] as usize).collect(),
                kurt: get(&k),
                se: get(&se),
                hi: get(&hi),
                theory: get(&th),
            };
            let i0 = rows[0];
            let lambda = crate::theory::eigen::lambda_max(
                w as usize,
                slope[i0].unwrap_or(0.0),
                kw[i0].unwrap_or(f64::NAN),
            );
            let pooled = (networks[i0] * samples[i0] * w) as f64;
            let label = format!("{} ({}), width {w}, slope {a}", e.name, init_name);
            out.push(compare(label, &r, lambda, pooled));
        }
    }
    Ok(out)
}

pub fn claim(runs: &Runs) -> Result<Claim> {
    let settings = settings(runs)?;
    if settings.is_empty() {
        return Ok(CLAIM.not_run("kurtosis_mc results"));
    }
    let (verdict, why) = verdict(&settings);
    let mut measured = vec![
        "Monte Carlo kurtosis of He networks on Gaussian inputs (`kurtosis_mc`) against the recursion. \
         *Follows until*: the first layer from which the recursion stays above the simulation's 95% interval; \
         *within 3 SE*: share of layers 1 to that one where the recursion lies within three standard errors; \
         growth per layer fitted on those layers; *N*: pooled values per layer, the most a sample kurtosis can reach.\n"
            .to_string(),
        "| setting | follows until layer | within 3 SE | growth measured | growth predicted | λ_max | N | recursion passes N at layer |".into(),
        "|---|---|---|---|---|---|---|---|".into(),
    ];
    for s in &settings {
        measured.push(format!(
            "| {} | {} | {:.0}% | {} | {} | {} | {} | {} |",
            s.label,
            s.follows_until.map_or("end".into(), |l| l.to_string()),
            100.0 * s.within_3se,
            num(s.rate_measured),
            num(s.rate_predicted),
            num(s.lambda_max),
            num(s.pooled),
            s.bound_layer
                .map_or("beyond the depth".into(), |l| l.to_string()),
        ));
    }
    let figures = runs.figures(crate::plot::figure::KURTOSIS_MC);
    let followed: Vec<usize> = settings.iter().map(followed_layers).collect();
    let worst = settings.iter().map(|s| s.within_3se).fold(1.0, f64::min);
    let headline = format!(
        "{} settings: followed {}–{} layers, within 3 SE on ≥ {:.0}%",
        settings.len(),
        followed.iter().min().unwrap_or(&0),
        followed.iter().max().unwrap_or(&0),
        100.0 * worst
    );
    Ok(CLAIM.checked((verdict, why), headline, measured, figures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(kurt: &[f64], theory: &[f64], se: f64) -> Rows {
        Rows {
            layer: (0..kurt.len()).collect(),
            kurt: kurt.to_vec(),
            se: vec![se; kurt.len()],
            hi: kurt.iter().map(|k| k + 1.96 * se).collect(),
            theory: theory.to_vec(),
        }
    }

    #[test]
    fn the_simulation_follows_until_the_recursion_leaves_for_good() {
        // Recursion 3·1.5^l; the simulation equals it to layer 6, then stalls at 30.
        let theory: Vec<f64> = (0..12).map(|l| 3.0 * 1.5f64.powi(l)).collect();
        let kurt: Vec<f64> = theory.iter().map(|&t| t.min(30.0)).collect();
        let s = compare("x".into(), &rows(&kurt, &theory, 1.0), 1.5, 1e6);
        // 3·1.5^5 = 22.8 < 30 and 3·1.5^6 = 34.2 > 30 + 1.96: leaves at layer 6.
        assert_eq!(s.follows_until, Some(6));
        assert_eq!(s.within_3se, 1.0);
        assert!((s.rate_measured - 1.5).abs() < 1e-9 && (s.rate_predicted - 1.5).abs() < 1e-9);
        assert_eq!(s.bound_layer, None);
        assert_eq!(verdict(std::slice::from_ref(&s)).0, Verdict::Holds);
        // With a pooled sample of 100 values the recursion passes N at layer 9 (3·1.5^9 = 115).
        assert_eq!(
            compare("x".into(), &rows(&kurt, &theory, 1.0), 1.5, 100.0).bound_layer,
            Some(9)
        );
        // Too few followed layers make it hold only in part.
        let short: Vec<f64> = theory.iter().map(|&t| t.min(8.0)).collect();
        let s = compare("x".into(), &rows(&short, &theory, 0.1), 1.5, 1e6);
        assert_eq!(s.follows_until, Some(3));
        assert_eq!(verdict(&[s]).0, Verdict::HoldsInPart);
    }

    #[test]
    fn a_simulation_away_from_the_recursion_does_not_hold() {
        let theory: Vec<f64> = (0..8).map(|l| 3.0 * 1.5f64.powi(l)).collect();
        // Estimates 10 SE above the recursion at every layer.
        let kurt: Vec<f64> = theory.iter().map(|t| t + 10.0).collect();
        let s = compare("x".into(), &rows(&kurt, &theory, 1.0), 1.5, 1e6);
        assert_eq!(s.follows_until, None);
        assert_eq!(s.within_3se, 0.0);
        assert_eq!(verdict(&[s]).0, Verdict::DoesNotHoldAtThisScale);
        assert_eq!(verdict(&[]).0, Verdict::NotRun);
    }
}
