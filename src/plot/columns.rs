//! Plain-Rust access to results tables: typed columns pulled out of a polars
//! DataFrame (every error names the column), quantiles, and the labels the
//! figures use for initialisers and parameter values.

use crate::init::InitName;
use anyhow::{Context, Result};
use polars::prelude::{Column, DataFrame, DataType};

/// The column `name`, an error naming it if the table lacks it.
fn column<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column> {
    df.column(name)
        .with_context(|| format!("the results have no column `{name}`"))
}

/// The column `name` cast to `to`; `kind` says what it is not when it cannot be.
fn cast(df: &DataFrame, name: &str, to: DataType, kind: &str) -> Result<Column> {
    column(df, name)?
        .cast(&to)
        .with_context(|| format!("column `{name}` is not {kind}"))
}

/// A float column (integer columns are converted); nulls are `None`.
pub fn floats(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let column = cast(df, name, DataType::Float64, "numeric")?;
    Ok(column.f64()?.iter().collect())
}

/// A float column if the table has it, else all nulls.
pub fn floats_or_null(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    if has(df, name) {
        floats(df, name)
    } else {
        Ok(vec![None; df.height()])
    }
}

/// An integer column; a null is an error naming the column.
pub fn ints(df: &DataFrame, name: &str) -> Result<Vec<i64>> {
    cast(df, name, DataType::Int64, "an integer")?
        .i64()?
        .iter()
        .enumerate()
        .map(|(row, v)| v.with_context(|| format!("column `{name}` is null in row {row}")))
        .collect()
}

/// A string column, borrowed from the table; nulls become empty strings.
pub fn strings<'a>(df: &'a DataFrame, name: &str) -> Result<Vec<&'a str>> {
    Ok(column(df, name)?
        .str()
        .with_context(|| format!("column `{name}` is not text"))?
        .iter()
        .map(|v| v.unwrap_or_default())
        .collect())
}

/// A string column if the table has it, else `default` in every row.
pub fn strings_or<'a>(df: &'a DataFrame, name: &str, default: &'a str) -> Result<Vec<&'a str>> {
    if has(df, name) {
        strings(df, name)
    } else {
        Ok(vec![default; df.height()])
    }
}

/// A boolean column if the table has it (nulls false), else all false.
pub fn bools_or_false(df: &DataFrame, name: &str) -> Result<Vec<bool>> {
    if !has(df, name) {
        return Ok(vec![false; df.height()]);
    }
    Ok(column(df, name)?
        .bool()
        .with_context(|| format!("column `{name}` is not boolean"))?
        .iter()
        .map(|v| v.unwrap_or(false))
        .collect())
}

/// An integer column if the table has it, else `default` in every row.
pub fn ints_or(df: &DataFrame, name: &str, default: i64) -> Result<Vec<i64>> {
    if has(df, name) {
        ints(df, name)
    } else {
        Ok(vec![default; df.height()])
    }
}

pub fn has(df: &DataFrame, name: &str) -> bool {
    df.column(name).is_ok()
}

/// How a quantile is read off a sorted sample: where, between two neighbouring
/// order statistics, the `p` quantile lies. The rules agree on large samples
/// but not in a heavy tail, where the 0.999 quantile of 1,000 networks is
/// decided by the two largest values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantileRule {
    /// Linear interpolation at the 0-based position (n − 1)·p: numpy's and
    /// polars' default, R's type 7. Useful to compare with other tools.
    // No figure draws with it yet (only tests and comparisons), and `columns`
    // is private to `plot`, so the compiler would call it dead.
    #[allow(dead_code)]
    Linear,
    /// SciPy's `mstats.mquantiles` with its default plotting positions,
    /// alphap = betap = 0.4 (Cunnane's rule), which the authors' figure code
    /// used: the quantiles the paper's Fig. 2 draws.
    Authors,
}

impl QuantileRule {
    /// How the rule is named on figures and in the report.
    pub fn describe(self) -> &'static str {
        match self {
            QuantileRule::Linear => "linear interpolation (numpy's default, R type 7)",
            QuantileRule::Authors => {
                "SciPy mquantiles plotting positions, alphap = betap = 0.4, as in the authors' code"
            }
        }
    }
}

/// The `p` quantile of `sorted` (ascending, no NaN; ±∞ allowed) by `rule`;
/// NaN for an empty sample, the one value for a sample of one.
///
/// Where the rule puts all the weight on one order statistic, the result is
/// that value even if its neighbour is infinite (SciPy's arithmetic would
/// give 0·∞ = NaN there); between a finite value and +∞ it is +∞, so an
/// infinite statistic ranks above every finite one.
pub fn quantile_sorted(sorted: &[f64], p: f64, rule: QuantileRule) -> f64 {
    let n = sorted.len();
    match n {
        0 => return f64::NAN,
        1 => return sorted[0],
        _ => {}
    }
    if p.is_nan() {
        return f64::NAN;
    }
    let p = p.clamp(0.0, 1.0);
    // `lower` is the 0-based index of the order statistic below the quantile
    // (so `lower + 1` is the one above) and `weight` the share of the upper one.
    let (lower, weight) = match rule {
        QuantileRule::Linear => {
            let position = (n - 1) as f64 * p;
            let lower = (position.floor() as usize).min(n - 2);
            (lower, position - lower as f64)
        }
        QuantileRule::Authors => {
            // SciPy's definition with 1-based order statistics x₁ ≤ … ≤ xₙ:
            // m = alphap + p(1 − alphap − betap), aleph = n·p + m,
            // k = ⌊clip(aleph, 1, n − 1)⌋, gamma = clip(aleph − k, 0, 1),
            // Q = (1 − gamma)·x_k + gamma·x_{k+1}.
            const ALPHAP: f64 = 0.4;
            const BETAP: f64 = 0.4;
            let m = ALPHAP + p * (1.0 - ALPHAP - BETAP);
            let aleph = n as f64 * p + m;
            let k = aleph.clamp(1.0, (n - 1) as f64).floor();
            let gamma = (aleph - k).clamp(0.0, 1.0);
            (k as usize - 1, gamma)
        }
    };
    let (below, above) = (sorted[lower], sorted[lower + 1]);
    if weight == 0.0 || below == above {
        below
    } else if weight == 1.0 {
        above
    } else {
        // This form, not below + weight·(above − below), keeps −∞ below a
        // finite value at −∞ instead of turning it into ∞ − ∞ = NaN.
        (1.0 - weight) * below + weight * above
    }
}

/// A sample prepared for quantiles: NaN values (missing ones included) are
/// counted and left out, infinite values are counted and kept in the ranking
/// (+∞ sorts after every finite value), the rest is sorted ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankedSample {
    pub sorted: Vec<f64>,
    /// Values left out because they were NaN.
    pub nan: usize,
    /// Values in `sorted` that are +∞ or −∞.
    pub infinite: usize,
}

impl RankedSample {
    pub fn new(mut values: Vec<f64>) -> RankedSample {
        let before = values.len();
        values.retain(|v| !v.is_nan());
        values.sort_by(f64::total_cmp);
        RankedSample {
            nan: before - values.len(),
            infinite: values.iter().filter(|v| v.is_infinite()).count(),
            sorted: values,
        }
    }

    pub fn quantile(&self, p: f64, rule: QuantileRule) -> f64 {
        quantile_sorted(&self.sorted, p, rule)
    }
}

/// Number of distinct values, by their text.
pub fn distinct<T: ToString>(values: impl IntoIterator<Item = T>) -> usize {
    values
        .into_iter()
        .map(|v| v.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Where an initialiser goes in legends: the order of [`InitName`], unknown names after it.
pub fn init_rank(name: &str) -> usize {
    let all = InitName::all();
    name.parse::<InitName>().map_or(all.len(), |n| {
        all.iter().position(|x| *x == n).expect("a variant")
    })
}

/// Sorts initialiser names in legend order.
pub fn sort_inits(names: &mut [String]) {
    names.sort_by(|a, b| init_rank(a).cmp(&init_rank(b)).then_with(|| a.cmp(b)));
}

/// The name an initialiser has in the paper (an unknown name as it is).
pub fn init_label(name: &str) -> String {
    match name.parse::<InitName>() {
        Ok(n) => n.label().to_string(),
        Err(_) => name.to_string(),
    }
}

/// Whether an initialiser's weight kurtosis κ_w is a hyper-parameter, so that
/// its runs under one name differ by κ_w (the `kappa_w` column tells them apart).
pub fn kurtosis_is_a_hyper_parameter(name: &str) -> bool {
    name.parse::<InitName>()
        .is_ok_and(InitName::kurtosis_is_a_hyper_parameter)
}

/// A parameter value as short text: 3 not 3.0, 1e-4 not 0.0001.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == v.trunc() && v.abs() < 1e6 {
        return format!("{}", v as i64);
    }
    let magnitude = v.abs().log10().floor();
    if !(-2.0..6.0).contains(&magnitude) {
        let mantissa = v / 10f64.powf(magnitude);
        let mantissa = (mantissa * 100.0).round() / 100.0;
        if mantissa == mantissa.trunc() {
            format!("{}e{}", mantissa as i64, magnitude as i64)
        } else {
            format!("{mantissa}e{}", magnitude as i64)
        }
    } else {
        let text = format!("{:.4}", v);
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A sorted, de-duplicated list of integers as short text: "5-50" for a run of
/// equally spaced values shown as its ends, else the values.
pub fn int_set(values: impl IntoIterator<Item = i64>) -> String {
    let set: std::collections::BTreeSet<i64> = values.into_iter().collect();
    let list: Vec<i64> = set.into_iter().collect();
    match list.len() {
        0 => String::new(),
        1 => list[0].to_string(),
        2 | 3 => list
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        _ => format!("{}–{}", list[0], list[list.len() - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_rule_interpolates_like_numpy() {
        use QuantileRule::Linear;
        let v = [1.0, 2.0, 3.0, 4.0];
        // Position (n − 1)·p: 1.5 -> halfway between 2 and 3; 2.7 -> 3 + 0.7.
        assert_eq!(quantile_sorted(&v, 0.5, Linear), 2.5);
        assert!((quantile_sorted(&v, 0.9, Linear) - 3.7).abs() < 1e-12);
        assert_eq!(quantile_sorted(&v, 1.0, Linear), 4.0);
        assert_eq!(quantile_sorted(&v, 0.0, Linear), 1.0);
        assert_eq!(quantile_sorted(&[7.0], 0.99, Linear), 7.0);
        assert!(quantile_sorted(&[], 0.5, Linear).is_nan());
        // equal neighbours stay exact even when they are infinite
        assert_eq!(
            quantile_sorted(&[0.0, f64::INFINITY, f64::INFINITY], 0.9, Linear),
            f64::INFINITY
        );
    }

    /// With alphap = betap = 0.4: m = 0.4 + 0.2·p and aleph = n·p + m.
    #[test]
    fn authors_rule_matches_values_worked_from_scipys_definition() {
        use QuantileRule::Authors;
        // Rounding of aleph − k is all that separates these from exact.
        let close = |got: f64, want: f64| {
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "got {got}, want {want}"
            );
        };
        let v = [1.0, 2.0, 3.0, 4.0];
        // p = 0.5: m = 0.5, aleph = 2 + 0.5 = 2.5, k = 2, gamma = 0.5:
        // 0.5·x₂ + 0.5·x₃ = 2.5.
        close(quantile_sorted(&v, 0.5, Authors), 2.5);
        // p = 0.25: m = 0.45, aleph = 1.45, k = 1, gamma = 0.45:
        // 0.55·1 + 0.45·2 = 1.45.
        close(quantile_sorted(&v, 0.25, Authors), 1.45);
        // p = 0.9: m = 0.58, aleph = 4.18, clipped to n − 1 = 3, so k = 3 and
        // gamma = clip(1.18, 0, 1) = 1: x₄ = 4 (the linear rule gives 3.7).
        close(quantile_sorted(&v, 0.9, Authors), 4.0);

        // x = 1..=10, p = 0.9: m = 0.58, aleph = 9.58, k = 9, gamma = 0.58:
        // 0.42·9 + 0.58·10 = 9.58 (linear: 9.1).
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        close(quantile_sorted(&ten, 0.9, Authors), 9.58);
        // p = 0.99: m = 0.598, aleph = 10.498 clipped to 9, gamma = 1: x₁₀.
        close(quantile_sorted(&ten, 0.99, Authors), 10.0);
        // p = 0.1: m = 0.42, aleph = 1.42, k = 1, gamma = 0.42: 1.42.
        close(quantile_sorted(&ten, 0.1, Authors), 1.42);

        // Unequal gaps: x = 0, 10, 100, 1000, 10000 (n = 5).
        let spread = [0.0, 10.0, 100.0, 1000.0, 10000.0];
        // p = 0.75: m = 0.55, aleph = 3.75 + 0.55 = 4.3, k = 4, gamma = 0.3:
        // 0.7·1000 + 0.3·10000 = 3700 (linear: position 3, exactly 1000).
        close(quantile_sorted(&spread, 0.75, Authors), 3700.0);
        // p = 0.5: m = 0.5, aleph = 3 exactly, gamma = 0: x₃ = 100.
        close(quantile_sorted(&spread, 0.5, Authors), 100.0);

        // Two values: p = 0.5 gives aleph = 1.5, halfway: 3.
        close(quantile_sorted(&[2.0, 4.0], 0.5, Authors), 3.0);
    }

    #[test]
    fn authors_rule_at_the_edges() {
        use QuantileRule::Authors;
        let v = [1.0, 2.0, 3.0, 4.0];
        // p = 0: aleph = 0.4 clipped up to 1, gamma = clip(−0.6) = 0: x₁.
        assert_eq!(quantile_sorted(&v, 0.0, Authors), 1.0);
        // p = 1: aleph = 4.6 clipped to 3, gamma = 1: xₙ.
        assert_eq!(quantile_sorted(&v, 1.0, Authors), 4.0);
        // Levels outside [0, 1] are the ends; NaN has no quantile.
        assert_eq!(quantile_sorted(&v, -2.0, Authors), 1.0);
        assert_eq!(quantile_sorted(&v, 3.0, Authors), 4.0);
        assert!(quantile_sorted(&v, f64::NAN, Authors).is_nan());
        // n = 1: the value itself at every level; n = 0: no quantile.
        for p in [0.0, 0.5, 0.999, 1.0] {
            assert_eq!(quantile_sorted(&[7.0], p, Authors), 7.0);
        }
        assert!(quantile_sorted(&[], 0.5, Authors).is_nan());
    }

    #[test]
    fn infinite_values_rank_last_and_only_reach_the_quantiles_they_touch() {
        use QuantileRule::{Authors, Linear};
        let inf = f64::INFINITY;
        let v = [1.0, 2.0, 3.0, inf];
        // p = 0.5: aleph = 2.5 between x₂ and x₃, the infinity plays no part.
        assert_eq!(quantile_sorted(&v, 0.5, Authors), 2.5);
        // p = 0.6: m = 0.52, aleph = 2.92, k = 2, gamma = 0.92: 0.08·2 + 0.92·3.
        assert!((quantile_sorted(&v, 0.6, Authors) - 2.92).abs() < 1e-12);
        // p = 0.75: m = 0.55, aleph = 3.55, k = 3, gamma = 0.55: between 3 and +∞.
        assert_eq!(quantile_sorted(&v, 0.75, Authors), inf);
        assert_eq!(quantile_sorted(&v, 0.9, Authors), inf);
        // n = 5, p = 0.5: aleph = 3 exactly, gamma = 0: x₃ = 3, not 3 + 0·∞ = NaN.
        assert_eq!(
            quantile_sorted(&[1.0, 2.0, 3.0, inf, inf], 0.5, Authors),
            3.0
        );
        // −∞ below a finite value stays −∞ (not ∞ − ∞).
        assert_eq!(quantile_sorted(&[-inf, 1.0], 0.5, Authors), -inf);
        assert_eq!(quantile_sorted(&[-inf, 1.0], 0.5, Linear), -inf);
    }

    #[test]
    fn ranked_samples_count_nan_and_infinite_values() {
        let inf = f64::INFINITY;
        let sample = RankedSample::new(vec![3.0, f64::NAN, inf, 1.0, f64::NAN, 2.0]);
        assert_eq!(sample.sorted, [1.0, 2.0, 3.0, inf]);
        assert_eq!((sample.nan, sample.infinite), (2, 1));
        // The quantile is taken over the four values left: see the test above.
        assert_eq!(sample.quantile(0.5, QuantileRule::Authors), 2.5);
        let empty = RankedSample::new(vec![f64::NAN]);
        assert_eq!((empty.nan, empty.infinite, empty.sorted.len()), (1, 0, 0));
        assert!(empty.quantile(0.9, QuantileRule::Authors).is_nan());
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(1.8), "1.8");
        assert_eq!(number(0.0001), "1e-4");
        assert_eq!(number(0.3), "0.3");
        assert_eq!(number(2.5e-5), "2.5e-5");
        assert_eq!(int_set([5, 10, 20, 40]), "5–40");
        assert_eq!(int_set([10, 10]), "10");
        assert_eq!(int_set([0, 10]), "0, 10");
    }

    #[test]
    fn inits_sort_in_paper_order() {
        let mut v = vec![
            "zero".to_string(),
            "aaa".into(),
            "he_normal".into(),
            "gsm".into(),
        ];
        sort_inits(&mut v);
        assert_eq!(v, ["he_normal", "gsm", "zero", "aaa"]);
    }
}
