//! Streaming moments of many series at once, in f64: the empirical mean, unbiased
//! variance and kurtosis of each of `[S]` series (e.g. every layer × member) fed in
//! chunks. Sums are taken around a per-series shift (the first chunk's mean), so
//! no precision is lost when a series' mean is large next to its spread, which is
//! exactly what happens when the empirical variance vanishes.

use tch::{Kind, Tensor};

pub struct StreamingMoments {
    shape: Vec<i64>,
    shift: Option<Tensor>,
    count: i64,
    s1: Tensor,
    s2: Tensor,
    s3: Option<Tensor>,
    s4: Option<Tensor>,
}

/// Moments of each series.
#[derive(Debug, Clone)]
pub struct Moments {
    pub count: i64,
    /// `[S]` f64 each.
    pub mean: Vec<f64>,
    pub var_unbiased: Vec<f64>,
    /// Empty unless kurtosis was asked for.
    pub kurtosis: Vec<f64>,
}

impl StreamingMoments {
    /// Series of shape `shape`; `with_kurtosis` also keeps third and fourth sums.
    pub fn new(shape: &[i64], with_kurtosis: bool) -> Self {
        let z = || Tensor::zeros(shape, (Kind::Double, tch::Device::Cpu));
        StreamingMoments {
            shape: shape.to_vec(),
            shift: None,
            count: 0,
            s1: z(),
            s2: z(),
            s3: with_kurtosis.then(z),
            s4: with_kurtosis.then(z),
        }
    }

    /// Adds a chunk `x: [shape..., n]` (any float kind): n new values per series.
    pub fn add(&mut self, x: &Tensor) {
        let x = x.to_kind(Kind::Double);
        let last = (x.dim() - 1) as i64;
        let n = x.size()[last as usize];
        if self.shift.is_none() {
            self.shift = Some(x.mean_dim([last].as_slice(), true, Kind::Double));
        }
        let d = x - self.shift.as_ref().expect("set above");
        let dims = [last];
        let _ = self
            .s1
            .g_add_(&d.sum_dim_intlist(dims.as_slice(), false, Kind::Double));
        let d2 = d.square();
        let _ = self
            .s2
            .g_add_(&d2.sum_dim_intlist(dims.as_slice(), false, Kind::Double));
        if let (Some(s3), Some(s4)) = (self.s3.as_mut(), self.s4.as_mut()) {
            let _ = s3.g_add_(&(&d2 * &d).sum_dim_intlist(dims.as_slice(), false, Kind::Double));
            let _ = s4.g_add_(
                &d2.square()
                    .sum_dim_intlist(dims.as_slice(), false, Kind::Double),
            );
        }
        self.count += n;
    }

    pub fn finish(&self) -> Moments {
        let n = self.count as f64;
        let flat = |t: &Tensor| Vec::<f64>::try_from(t.reshape([-1])).expect("f64 tensor");
        let s1 = flat(&self.s1);
        let s2 = flat(&self.s2);
        let shift = match &self.shift {
            Some(s) => flat(s),
            None => vec![0.0; s1.len()],
        };
        let mut mean = Vec::with_capacity(s1.len());
        let mut var = Vec::with_capacity(s1.len());
        let mut kurt = Vec::new();
        let (s3, s4) = match (&self.s3, &self.s4) {
            (Some(a), Some(b)) => (flat(a), flat(b)),
            _ => (Vec::new(), Vec::new()),
        };
        for i in 0..s1.len() {
            let mu = s1[i] / n; // mean of the shifted values
            mean.push(shift[i] + mu);
            let m2 = (s2[i] / n - mu * mu).max(0.0);
            var.push(m2 * n / (n - 1.0));
            if !s4.is_empty() {
                let m4 =
                    s4[i] / n - 4.0 * mu * s3[i] / n + 6.0 * mu * mu * s2[i] / n - 3.0 * mu.powi(4);
                kurt.push(if m2 > 0.0 { m4 / (m2 * m2) } else { f64::NAN });
            }
        }
        let _ = &self.shape;
        Moments {
            count: self.count,
            mean,
            var_unbiased: var,
            kurtosis: kurt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_two_pass_formulas_with_a_large_mean() {
        // Two series: one around 1e4 with tiny spread, one plain.
        let a: Vec<f64> = (0..1000)
            .map(|i| 1e4 + ((i * 37 % 101) as f64 - 50.0) * 1e-6)
            .collect();
        let b: Vec<f64> = (0..1000)
            .map(|i| ((i * 53 % 97) as f64 - 48.0) / 10.0)
            .collect();
        let mut m = StreamingMoments::new(&[2], true);
        for chunk in 0..4 {
            let sl = |v: &Vec<f64>| v[chunk * 250..(chunk + 1) * 250].to_vec();
            let t = Tensor::from_slice(&[sl(&a), sl(&b)].concat()).view([2, 250]);
            m.add(&t);
        }
        let got = m.finish();
        for (s, series) in [&a, &b].iter().enumerate() {
            let n = series.len() as f64;
            let mean = series.iter().sum::<f64>() / n;
            let var = series.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let m2 = var * (n - 1.0) / n;
            let m4 = series.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n;
            assert!((got.mean[s] - mean).abs() < 1e-9 * mean.abs().max(1.0));
            assert!(
                (got.var_unbiased[s] - var).abs() < 1e-9 * var,
                "{} vs {}",
                got.var_unbiased[s],
                var
            );
            assert!((got.kurtosis[s] - m4 / (m2 * m2)).abs() < 1e-6 * m4 / (m2 * m2));
        }
    }
}
