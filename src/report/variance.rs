//! Claims 2 (Section 5's Gamma law) and 4 (Fig. 2) from `variance` results:
//! per initialiser and layer, quantiles over networks of the empirical variance
//! S² of output unit 0 by the authors' rule, with a 95% order-statistic
//! interval for the 0.9 quantile.
//!
//! Claim 2 verdict: holds if, for every initialiser with a prediction (He and
//! Glorot), the predicted 0.9 quantile lies within the measured one's 95%
//! interval on ≥ 90% of the layers; holds in part if both the prediction and
//! the measurement fall below 10⁻³ within the depth (the law gets the vanishing
//! right, not its values); otherwise it does not hold at this scale.
//!
//! Claim 4 verdict, over its parts: for each of the paper's random initialisers
//! (He, Glorot, orthogonal, GSM) "q0.9 < 10⁻³ at layer 80" and "the 0.9, 0.99
//! and 0.999 quantiles decrease after layer 40" (an increase counts only when a
//! quantile rises above the upper end of its previous layer's 95% interval, so
//! sampling noise is not read as growth); MetaInit "explodes" (its 0.9 quantile
//! ends more than 10× above its first layer's, or some networks' S² is
//! infinite); ZerO "constant after the first layer" (every later layer equal to
//! layer 1 within 10⁻⁶ relative). Holds if every part run holds, in part if at
//! least half do, otherwise it does not hold at this scale.

use super::stats::quantile_interval;
use super::{Claim, Quote, Runs, Verdict, num};
use crate::experiment::columns as col;
use crate::plot::columns::{
    QuantileRule, RankedSample, floats, floats_or_null, ints, ints_or, strings, strings_or,
};
use crate::theory::VarianceRatioLaw;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};

pub const COLUMNS: &[&str] = &[
    col::WORK_UNIT,
    col::INIT,
    col::DATASET,
    col::NETWORK,
    col::LAYER,
    col::SAMPLES,
    col::EMP_VAR,
    col::RESTARTS,
    col::THEORY_VARIANCE,
    col::THEORY_KURTOSIS,
];

/// The paper's random initialisers, whose S² Fig. 2 says vanishes.
const PAPER_RANDOM: [&str; 4] = ["he_normal", "glorot_normal", "orthogonal", "gsm"];
const THRESHOLD: f64 = 1e-3;
const QUANTILES: [f64; 3] = [0.9, 0.99, 0.999];

/// One layer's S² over networks, and its predicted log10 q0.9 if any.
type LayerValues = (Vec<f64>, Option<f64>);

/// One initialiser's S² per layer over its networks.
pub struct Curve {
    pub label: String,
    pub init: String,
    /// Per layer 0..: the ranked S² over networks.
    pub layers: Vec<RankedSample>,
    /// Per layer: log10 of the Section 5 prediction of the 0.9 quantile.
    pub predicted_log10_q90: Vec<Option<f64>>,
}

impl Curve {
    fn q(&self, layer: usize, p: f64) -> f64 {
        self.layers[layer].quantile(p, QuantileRule::Authors)
    }

    fn first_below(&self, p: f64) -> Option<usize> {
        (0..self.layers.len()).find(|&l| self.q(l, p) < THRESHOLD)
    }
}

fn curves(runs: &Runs) -> Result<Vec<Curve>> {
    let mut out = Vec::new();
    for (_, e) in runs.of_kind(crate::experiment::Kind::Variance) {
        let t = &e.table;
        let (init, layer, var) = (
            strings(t, col::INIT)?,
            ints(t, col::LAYER)?,
            floats(t, col::EMP_VAR)?,
        );
        let dataset = strings_or(t, col::DATASET, "")?;
        let samples = ints_or(t, col::SAMPLES, 0)?;
        let (tv, tk) = (
            floats_or_null(t, col::THEORY_VARIANCE)?,
            floats_or_null(t, col::THEORY_KURTOSIS)?,
        );
        let mut by_init: BTreeMap<(&str, &str), BTreeMap<usize, LayerValues>> = BTreeMap::new();
        for i in 0..t.height() {
            let slot = by_init
                .entry((init[i], dataset[i]))
                .or_default()
                .entry(layer[i] as usize)
                .or_default();
            slot.0.push(var[i].unwrap_or(f64::NAN));
            if let (Some(v), Some(k)) = (tv[i], tk[i]) {
                let law = VarianceRatioLaw::new(k, samples[i].max(2) as u64);
                slot.1 = Some(v.log10() + law.ln_quantile(0.9) / std::f64::consts::LN_10);
            }
        }
        for ((init, dataset), layers) in by_init {
            let (values, predicted): (Vec<_>, Vec<_>) = layers.into_values().unzip();
            out.push(Curve {
                label: format!("{} ({init}, {dataset})", e.name),
                init: init.to_string(),
                layers: values.into_iter().map(RankedSample::new).collect(),
                predicted_log10_q90: predicted,
            });
        }
    }
    out.sort_by_key(|c| crate::plot::columns::init_rank(&c.init));
    Ok(out)
}

/// The Section 5 comparison for one curve with a prediction.
pub struct LawCheck {
    pub agree: usize,
    pub layers: usize,
    pub first_below_predicted: Option<usize>,
    pub first_below_measured: Option<usize>,
    /// (layer, log10 measured − log10 predicted) at layer 40 and the deepest.
    pub gaps: Vec<(usize, f64)>,
}

pub fn law_check(c: &Curve) -> LawCheck {
    let n = c.layers.len();
    let mut agree = 0;
    for l in 0..n {
        if let Some(pred) = c.predicted_log10_q90[l] {
            let (lo, hi) = quantile_interval(&c.layers[l].sorted, 0.9);
            let p = 10f64.powf(pred);
            if lo <= p && p <= hi {
                agree += 1;
            }
        }
    }
    let pred_below =
        (0..n).find(|&l| c.predicted_log10_q90[l].is_some_and(|p| p < THRESHOLD.log10()));
    let gaps = [40.min(n - 1), n - 1]
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|l| {
            let m = c.q(l, 0.9);
            let p = c.predicted_log10_q90[l]?;
            (m > 0.0).then(|| (l, m.log10() - p))
        })
        .collect();
    LawCheck {
        agree,
        layers: n,
        first_below_predicted: pred_below,
        first_below_measured: c.first_below(0.9),
        gaps,
    }
}

pub fn law_verdict(checks: &[LawCheck]) -> (Verdict, String) {
    if checks.is_empty() {
        return (
            Verdict::NotRun,
            "no variance results with a Section 5 prediction".into(),
        );
    }
    let worst = checks
        .iter()
        .map(|c| c.agree as f64 / c.layers as f64)
        .fold(1.0, f64::min);
    let gap = checks
        .iter()
        .flat_map(|c| c.gaps.last())
        .map(|g| g.1)
        .fold(f64::NEG_INFINITY, f64::max);
    if worst >= 0.9 {
        (Verdict::Holds, "the predicted 0.9 quantile lies within the measured one's 95% interval on at least 90% of the layers".into())
    } else if checks
        .iter()
        .all(|c| c.first_below_predicted.is_some() && c.first_below_measured.is_some())
    {
        (
            Verdict::HoldsInPart,
            format!(
                "prediction and measurement both vanish below 10⁻³, but the prediction agrees on only {:.0}% of the layers and at the last layer lies up to {} orders of magnitude below the measurement",
                100.0 * worst,
                num(gap)
            ),
        )
    } else {
        (
            Verdict::DoesNotHoldAtThisScale,
            "the prediction and the measurement do not both fall below 10⁻³ within the depth"
                .into(),
        )
    }
}

static LAW_CLAIM: Quote = Quote {
    number: 2,
    title: "S² follows the Gamma law",
    source: "Section 5",
    statement: "\"For large n, we can approximate distribution of the ratio S_n²/σ² by χ²(DF_n)/DF_n, where DF_n = 2n/(κ − (n−3)/(n−1))\" (Section 5).",
};

pub fn gamma_law_claim(runs: &Runs) -> Result<Claim> {
    let with_law: Vec<Curve> = curves(runs)?
        .into_iter()
        .filter(|c| c.predicted_log10_q90.iter().any(Option::is_some))
        .collect();
    if with_law.is_empty() {
        return Ok(LAW_CLAIM.not_run("variance results of He or Glorot networks"));
    }
    let checks: Vec<LawCheck> = with_law.iter().map(law_check).collect();
    let (verdict, why) = law_verdict(&checks);
    let mut measured = vec![
        "Measured 0.9 quantile of S² over networks against the Gamma law's (its 95% interval from order statistics). \
         *Gap*: log10 measured − log10 predicted (positive: the law predicts a smaller variance than measured).\n".to_string(),
        "| initialiser | layers where the law is within the 95% interval | first layer predicted q0.9 < 10⁻³ | first layer measured q0.9 < 10⁻³ | gap (orders of magnitude) |".into(),
        "|---|---|---|---|---|".into(),
    ];
    for (c, k) in with_law.iter().zip(&checks) {
        let gaps: Vec<String> = k
            .gaps
            .iter()
            .map(|(l, g)| format!("{} at layer {l}", num(*g)))
            .collect();
        let layer = |l: Option<usize>| l.map_or("none".into(), |l| l.to_string());
        measured.push(format!(
            "| {} | {} of {} | {} | {} | {} |",
            c.label,
            k.agree,
            k.layers,
            layer(k.first_below_predicted),
            layer(k.first_below_measured),
            gaps.join(", ")
        ));
    }
    measured.push("\nWhat it means: the law is an approximation for large n that only sees the kurtosis; where it falls far below the measurement the networks' S² vanishes more slowly than a Gamma law with that kurtosis says, so the law overstates how fast the variance vanishes even where it gets the direction right.".into());
    let share = |f: fn(f64, f64) -> f64| {
        checks
            .iter()
            .map(|c| c.agree as f64 / c.layers as f64)
            .fold(f64::NAN, f)
    };
    let layer = |l: Option<usize>| l.map_or("–".to_string(), |l| l.to_string());
    let first_below: Vec<String> = with_law
        .iter()
        .zip(&checks)
        .map(|(c, k)| {
            let (law, measured) = (
                layer(k.first_below_predicted),
                layer(k.first_below_measured),
            );
            format!("{} {law}/{measured}", c.init)
        })
        .collect();
    let headline = format!(
        "law within the 95% interval on {:.0}–{:.0}% of layers; q0.9 < 10⁻³ from layer (law/measured) {}",
        100.0 * share(f64::min),
        100.0 * share(f64::max),
        first_below.join(", ")
    );
    Ok(LAW_CLAIM.checked(
        (verdict, why),
        headline,
        measured,
        runs.figures(crate::plot::figure::FIG2),
    ))
}

/// One part of claim 4 and whether it holds.
struct Part {
    what: String,
    holds: bool,
    measured: String,
}

/// Layers ≥ 40 at which quantile `p` rises above its previous layer's interval.
fn rises_after_40(c: &Curve, p: f64) -> usize {
    (41..c.layers.len())
        .filter(|&l| c.q(l, p) > quantile_interval(&c.layers[l - 1].sorted, p).1)
        .count()
}

fn parts(c: &Curve) -> Vec<Part> {
    let n = c.layers.len();
    let mut parts = Vec::new();
    if PAPER_RANDOM.contains(&c.init.as_str()) && n > 80 {
        let q = c.q(80, 0.9);
        parts.push(Part {
            what: format!("{}: q0.9 < 10⁻³ at layer 80", c.label),
            holds: q < THRESHOLD,
            measured: format!("q0.9 = {}", num(q)),
        });
        for p in QUANTILES {
            let rises = rises_after_40(c, p);
            parts.push(Part {
                what: format!("{}: q{p} decreases after layer 40", c.label),
                holds: rises == 0,
                measured: format!("{rises} of {} layers rise beyond sampling error", n - 41),
            });
        }
    } else if c.init == "metainit" {
        let (first, last) = (c.q(0, 0.9), c.q(n - 1, 0.9));
        let infinite: usize = c.layers.iter().map(|s| s.infinite).max().unwrap_or(0);
        parts.push(Part {
            what: format!("{}: S² explodes", c.label),
            holds: last > 10.0 * first || infinite > 0,
            measured: format!(
                "q0.9 {} at layer 0, {} at layer {}; up to {infinite} networks infinite",
                num(first),
                num(last),
                n - 1
            ),
        });
    } else if c.init == "zero" && n > 1 {
        let v1 = c.q(1, 0.5);
        let spread = (1..n).map(|l| (c.q(l, 0.5) - v1).abs()).fold(0.0, f64::max);
        parts.push(Part {
            what: format!("{}: S² constant after the first layer", c.label),
            holds: spread <= 1e-6 * v1.abs().max(f64::MIN_POSITIVE),
            measured: format!(
                "S² = {} at layer 1, largest departure after it {}",
                num(v1),
                num(spread)
            ),
        });
    }
    parts
}

static FIG2_CLAIM: Quote = Quote {
    number: 4,
    title: "Random inits' S² vanishes (Fig. 2)",
    source: "Section 6.2, Fig. 2",
    statement: "\"for all random initialization methods except MetaInit 90% networks will have empirical variance lower than 10^{-3} after 80 layers and all quantiles monotonously decrease after 40 layers. For MetaInit, empirical variances explode. [...] [ZerO] keeps the empirical variance constant after the first layer.\" (Section 6.2)",
};

pub fn fig2_claim(runs: &Runs, observations: &mut Vec<String>) -> Result<Claim> {
    let curves = curves(runs)?;
    observe(runs, &curves, observations)?;
    let parts: Vec<Part> = curves.iter().flat_map(parts).collect();
    if parts.is_empty() {
        return Ok(FIG2_CLAIM.not_run("variance results of the paper's initialisers at depth > 80"));
    }
    let (verdict, why, headline) =
        super::parts_verdict(parts.iter().map(|p| (p.what.as_str(), p.holds)));
    let mut measured = vec![
        "| part | holds | measured |".to_string(),
        "|---|---|---|".into(),
    ];
    for p in &parts {
        measured.push(format!(
            "| {} | {} | {} |",
            p.what,
            if p.holds { "yes" } else { "no" },
            p.measured
        ));
    }
    measured.push(
        "\nFirst layer at which the 0.9 quantile falls below 10⁻³, every initialiser run:\n".into(),
    );
    for c in &curves {
        measured.push(format!(
            "- {}: {}",
            c.label,
            c.first_below(0.9)
                .map_or("never".into(), |l| format!("layer {l}"))
        ));
    }
    Ok(FIG2_CLAIM.checked(
        (verdict, why),
        headline,
        measured,
        runs.figures(crate::plot::figure::FIG2),
    ))
}

/// What the variance results show beyond the paper: ZerO's exact zeros, NaN or
/// infinite networks, MetaInit's restarts.
fn observe(runs: &Runs, curves: &[Curve], out: &mut Vec<String>) -> Result<()> {
    for c in curves {
        if c.init == "zero"
            && let Some(l) =
                (0..c.layers.len()).find(|&l| c.layers[l].sorted.iter().all(|&v| v == 0.0))
        {
            out.push(format!(
                    "{}: S² is exactly 0 from layer {l} on. ZerO's first layer is a rectangular identity that passes on the first inputs (pixels) unchanged; where those pixels are constant over the dataset, as the blank corner pixels of MNIST-like images are, nothing varies after it.",
                    c.label
                ));
        }
        let nan = c.layers.iter().map(|s| s.nan).max().unwrap_or(0);
        let inf = c.layers.iter().map(|s| s.infinite).max().unwrap_or(0);
        if nan + inf > 0 {
            out.push(format!("{}: up to {nan} networks per layer have NaN S² and up to {inf} infinite; they are counted, not dropped (Fig. 2 names them).", c.label));
        }
    }
    for (_, e) in runs.of_kind(crate::experiment::Kind::Variance) {
        let t = &e.table;
        if !crate::plot::columns::has(t, col::RESTARTS) {
            continue;
        }
        let (unit, net, init, restarts) = (
            strings(t, col::WORK_UNIT)?,
            ints(t, col::NETWORK)?,
            strings(t, col::INIT)?,
            ints(t, col::RESTARTS)?,
        );
        let mut members: BTreeMap<(&str, i64), (&str, i64)> = BTreeMap::new();
        for i in 0..t.height() {
            members.insert((unit[i], net[i]), (init[i], restarts[i]));
        }
        let restarted = members
            .values()
            .filter(|(init, r)| *init == "metainit" && *r > 0)
            .count();
        let total: i64 = members
            .values()
            .filter(|(init, _)| *init == "metainit")
            .map(|m| m.1)
            .sum();
        let of = members
            .values()
            .filter(|(init, _)| *init == "metainit")
            .count();
        if of > 0 {
            out.push(format!("{}: {restarted} of {of} MetaInit networks degenerated during MetaInit and were restarted ({total} restarts in all).", e.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(
        init: &str,
        per_layer: impl Fn(usize, usize) -> f64,
        layers: usize,
        networks: usize,
        pred: impl Fn(usize) -> Option<f64>,
    ) -> Curve {
        Curve {
            label: init.into(),
            init: init.into(),
            layers: (0..layers)
                .map(|l| RankedSample::new((0..networks).map(|n| per_layer(l, n)).collect()))
                .collect(),
            predicted_log10_q90: (0..layers).map(pred).collect(),
        }
    }

    #[test]
    fn a_vanishing_random_init_passes_both_parts_and_a_rising_one_fails() {
        // S² = (n + 1)/100 · 0.7^l over 100 networks: q0.9 at layer 80 ≈ 0.9 · 0.7^80 ≈ 4e-13.
        let good = curve(
            "he_normal",
            |l, n| (n + 1) as f64 / 100.0 * 0.7f64.powi(l as i32),
            101,
            100,
            |_| None,
        );
        let p = parts(&good);
        assert_eq!(p.len(), 4);
        assert!(
            p.iter().all(|p| p.holds),
            "{:?}",
            p.iter().map(|p| &p.measured).collect::<Vec<_>>()
        );
        // Doubling at layer 60 is far above the interval of layer 59.
        let bad = curve(
            "gsm",
            |l, n| (n + 1) as f64 * if l == 60 { 1.0 } else { 0.5f64.powi(l as i32) },
            101,
            100,
            |_| None,
        );
        let p = parts(&bad);
        assert!(p[0].holds && p[1..].iter().all(|p| !p.holds));
    }

    #[test]
    fn zero_constant_and_metainit_explosion_are_read_from_the_quantiles() {
        let zero = curve(
            "zero",
            |l, _| if l == 0 { 2.0 } else { 0.5 },
            101,
            1,
            |_| None,
        );
        assert!(parts(&zero)[0].holds);
        let drifting = curve("zero", |l, _| 0.5 + l as f64 * 1e-3, 101, 1, |_| None);
        assert!(!parts(&drifting)[0].holds);
        let exploding = curve(
            "metainit",
            |l, n| (n + 1) as f64 * 1.1f64.powi(l as i32),
            101,
            10,
            |_| None,
        );
        assert!(parts(&exploding)[0].holds);
        let calm = curve("metainit", |_, n| (n + 1) as f64, 101, 10, |_| None);
        assert!(!parts(&calm)[0].holds);
    }

    #[test]
    fn the_law_check_counts_agreeing_layers_and_the_gap() {
        // Networks' S² uniform on 1..=1000 · 10^-l; the law predicts the 0.9
        // quantile exactly (900.x · 10^-l) for l < 5 and 10^-30 from layer 5 on.
        let c = curve(
            "he_normal",
            |l, n| (n + 1) as f64 * 10f64.powi(-(l as i32)),
            50,
            1000,
            |l| {
                Some(if l < 5 {
                    900.5f64.log10() - l as f64
                } else {
                    -30.0
                })
            },
        );
        let k = law_check(&c);
        assert_eq!(k.agree, 5);
        assert_eq!(k.first_below_predicted, Some(5));
        // 900.5·10^-l < 10^-3 from l = 6.
        assert_eq!(k.first_below_measured, Some(6));
        let (l, gap) = k.gaps[0];
        assert_eq!(l, 40);
        assert!(
            (gap - (900.5f64.log10() - 40.0 + 30.0)).abs() < 1e-3,
            "{gap}"
        );
        assert_eq!(law_verdict(&[k]).0, Verdict::HoldsInPart);
    }
}
