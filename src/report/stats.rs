//! The few statistics the report's verdicts rest on, each with the sampling
//! error that sets its tolerance.

/// Spearman's rank correlation of `x` and `y` (ties get their average rank);
/// NaN when fewer than three pairs or a constant variable.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "spearman needs pairs");
    if x.len() < 3 {
        return f64::NAN;
    }
    pearson(&ranks(x), &ranks(y))
}

/// The sampling threshold a rank correlation of `n` pairs must pass to differ
/// from 0: two standard errors under independence, 2/√(n − 1).
pub fn spearman_threshold(n: usize) -> f64 {
    2.0 / ((n.max(2) - 1) as f64).sqrt()
}

fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // 1-based ranks start+1..=end share their mean.
        let shared = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = shared;
        }
        start = end;
    }
    ranks
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// Least-squares slope of `y` on `x`; NaN with fewer than two distinct `x`.
pub fn ols_slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
    }
    sxy / sxx
}

/// Mean and standard error of the mean (0 for one value; NaN for none).
pub fn mean_se(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// A distribution-free 95% interval for the `p` quantile of a sorted sample:
/// the order statistics at ranks n·p ∓ 1.96·√(n·p·(1 − p)) (the normal
/// approximation of the binomial count below the quantile), clamped to the sample.
pub fn quantile_interval(sorted: &[f64], p: f64) -> (f64, f64) {
    let n = sorted.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let centre = n as f64 * p;
    let half = 1.96 * (n as f64 * p * (1.0 - p)).sqrt();
    let at = |rank: f64| sorted[(rank.max(1.0) as usize).clamp(1, n) - 1];
    (at((centre - half).floor()), at((centre + half).ceil()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_a_monotone_map_is_one_and_ties_share_ranks() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y: Vec<f64> = x.iter().map(|v: &f64| -v.powi(3)).collect();
        assert!((spearman(&x, &y) + 1.0).abs() < 1e-12);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        // Worked by hand: ranks x = 1,2,3,4 and y = 2,1,4,3 give
        // Σd² = 4, ρ = 1 − 6·4/(4·15) = 0.6.
        let rho = spearman(&[1.0, 2.0, 3.0, 4.0], &[20.0, 10.0, 40.0, 30.0]);
        assert!((rho - 0.6).abs() < 1e-12, "{rho}");
        assert!((spearman_threshold(101) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn slope_mean_and_quantile_interval_by_hand() {
        assert!((ols_slope(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]) - 2.0).abs() < 1e-12);
        let (m, se) = mean_se(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((se - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        // n = 100, p = 0.9: ranks 90 ∓ 1.96·3 = 84.12 and 95.88 → 84 and 96.
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile_interval(&sorted, 0.9), (84.0, 96.0));
    }
}
