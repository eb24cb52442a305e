//! Plain-Rust access to results tables: typed columns pulled out of a polars
//! DataFrame (every error names the column), quantiles, and the labels the
//! figures use for initialisers and parameter values.

use anyhow::{Context, Result};
use polars::prelude::{DataFrame, DataType};

/// A float column (integer columns are converted); nulls are `None`.
pub fn floats(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let column = df
        .column(name)
        .with_context(|| format!("the results have no column `{name}`"))?;
    let column = column
        .cast(&DataType::Float64)
        .with_context(|| format!("column `{name}` is not numeric"))?;
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
    let column = df
        .column(name)
        .with_context(|| format!("the results have no column `{name}`"))?;
    let column = column
        .cast(&DataType::Int64)
        .with_context(|| format!("column `{name}` is not an integer"))?;
    column
        .i64()?
        .iter()
        .enumerate()
        .map(|(row, v)| v.with_context(|| format!("column `{name}` is null in row {row}")))
        .collect()
}

/// A string column, borrowed from the table; nulls become empty strings.
pub fn strings<'a>(df: &'a DataFrame, name: &str) -> Result<Vec<&'a str>> {
    let column = df
        .column(name)
        .with_context(|| format!("the results have no column `{name}`"))?;
    Ok(column
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
    let column = df.column(name)?;
    Ok(column
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

/// The `p` quantile of `values` (sorted ascending, no NaN), linear
/// interpolation between order statistics (R's type 7, numpy's default).
pub fn quantile_sorted(values: &[f64], p: f64) -> f64 {
    match values.len() {
        0 => f64::NAN,
        1 => values[0],
        n => {
            let h = (n - 1) as f64 * p.clamp(0.0, 1.0);
            let below = h.floor() as usize;
            let above = (below + 1).min(n - 1);
            let (a, b) = (values[below], values[above]);
            if a == b {
                a
            } else {
                a + (h - below as f64) * (b - a)
            }
        }
    }
}

/// Sorts a sample ascending, dropping NaN.
pub fn sorted_without_nan(mut values: Vec<f64>) -> Vec<f64> {
    values.retain(|v| !v.is_nan());
    values.sort_by(f64::total_cmp);
    values
}

/// Number of distinct values, by their text.
pub fn distinct<T: ToString>(values: impl IntoIterator<Item = T>) -> usize {
    values
        .into_iter()
        .map(|v| v.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Where an initialiser goes in legends: the README's order, others after it.
pub fn init_rank(name: &str) -> usize {
    const ORDER: [&str; 12] = [
        "he_normal",
        "he_uniform",
        "he_bernoulli",
        "glorot_normal",
        "lecun_normal",
        "orthogonal",
        "gsm",
        "metainit",
        "lsuv",
        "zero",
        "zero_star",
        "identity",
    ];
    ORDER.iter().position(|n| *n == name).unwrap_or(ORDER.len())
}

/// Sorts initialiser names in legend order.
pub fn sort_inits(names: &mut [String]) {
    names.sort_by(|a, b| init_rank(a).cmp(&init_rank(b)).then_with(|| a.cmp(b)));
}

/// The name an initialiser has in the paper.
pub fn init_label(name: &str) -> String {
    match name {
        "he_normal" => "He normal",
        "he_uniform" => "He uniform",
        "he_bernoulli" => "He Bernoulli",
        "glorot_normal" => "Glorot normal",
        "lecun_normal" => "LeCun normal",
        "orthogonal" => "orthogonal",
        "gsm" => "GSM",
        "metainit" => "MetaInit",
        "lsuv" => "LSUV",
        "zero" => "ZerO",
        "zero_star" => "ZerO*",
        "identity" => "identity",
        other => other,
    }
    .to_string()
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
    fn quantile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&v, 0.5), 2.5);
        assert!((quantile_sorted(&v, 0.9) - 3.7).abs() < 1e-12);
        assert_eq!(quantile_sorted(&v, 1.0), 4.0);
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&[7.0], 0.99), 7.0);
        assert!(quantile_sorted(&[], 0.5).is_nan());
        // equal neighbours stay exact even when they are infinite
        assert_eq!(
            quantile_sorted(&[0.0, f64::INFINITY, f64::INFINITY], 0.9),
            f64::INFINITY
        );
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
