//! What every experiment of a run shares: the run's seed, where data lives, the
//! datasets already loaded (each loaded once per run), threads and the memory
//! budget that sizes ensembles.

use crate::data::{DataSource, Dataset, DatasetName, Normalization};
use anyhow::Result;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

pub struct Context {
    pub seed: u64,
    pub data_source: DataSource,
    pub threads: usize,
    /// Bytes an ensemble may use; ensembles are sized to stay under it.
    pub memory_budget: u64,
    datasets: HashMap<(DatasetName, Normalization), Rc<Dataset>>,
}

/// Names one network of a sweep point in a refusal of [`Context::check_fits`].
pub fn one_network(
    init: &crate::init::Initializer,
    width: usize,
    depth: usize,
    on: impl std::fmt::Display,
) -> String {
    format!(
        "one network of `{}` width {width} depth {depth} on {on}",
        init.name()
    )
}

impl Context {
    pub fn new(seed: u64, data_dir: Option<PathBuf>, threads: usize, memory_budget: u64) -> Self {
        Context {
            seed,
            data_source: DataSource::new(data_dir),
            threads,
            memory_budget,
            datasets: HashMap::new(),
        }
    }

    /// Refuses, before any unit runs, what cannot fit the memory budget even alone:
    /// `bytes` is the estimate an experiment sizes its ensembles with, `what` names
    /// the thing measured ("one network of `he_normal` width 10 depth 100") and
    /// `smaller` the keys that shrink it. Ensembles are sized to the budget, but
    /// never below one member, so without this check a member larger than the
    /// budget would end in an allocation failure or the OOM killer.
    pub fn check_fits(&self, what: &str, bytes: f64, smaller: &str) -> Result<()> {
        if bytes.is_nan() || bytes > self.memory_budget as f64 {
            let size = if bytes < u64::MAX as f64 {
                let b = bytes.ceil() as u64;
                format!("{} ({b} bytes)", crate::config::human_bytes(b))
            } else {
                format!("{bytes:.3e} bytes")
            };
            anyhow::bail!(
                "{what} needs about {size}, more than the memory budget of {} ({} bytes): raise the budget with --memory-gb (default: 60% of the memory available) or use a smaller {smaller}",
                crate::config::human_bytes(self.memory_budget),
                self.memory_budget
            );
        }
        Ok(())
    }

    /// The dataset, normalised as asked, loaded on first use.
    pub fn dataset(
        &mut self,
        name: DatasetName,
        normalization: Normalization,
    ) -> Result<Rc<Dataset>> {
        if let Some(d) = self.datasets.get(&(name, normalization)) {
            return Ok(d.clone());
        }
        let d = Rc::new(Dataset::load(name, normalization, &self.data_source)?);
        self.datasets.insert((name, normalization), d.clone());
        Ok(d)
    }

    /// Loads each distinct dataset of `used` once and describes it for the metadata.
    pub fn describe_datasets(
        &mut self,
        used: impl IntoIterator<Item = (DatasetName, Normalization)>,
    ) -> Result<serde_json::Value> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for key in used {
            if !seen.contains(&key) {
                seen.push(key);
                out.push(self.dataset(key.0, key.1)?.describe());
            }
        }
        Ok(serde_json::Value::Array(out))
    }
}

/// Bytes of memory available now (MemAvailable), or 4 GiB if unknown.
pub fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(4 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_beyond_the_budget_is_refused_with_both_sizes() {
        let ctx = Context::new(0, None, 1, 1 << 20);
        assert!(
            ctx.check_fits("one network", (1 << 20) as f64, "width")
                .is_ok()
        );
        let e = format!(
            "{:#}",
            ctx.check_fits("one network", 3.0 * (1 << 20) as f64, "width")
                .unwrap_err()
        );
        assert!(
            e.contains("one network needs about 3.0 MiB (3145728 bytes)"),
            "{e}"
        );
        assert!(
            e.contains("memory budget of 1.0 MiB (1048576 bytes)"),
            "{e}"
        );
        assert!(
            e.contains("--memory-gb") && e.contains("smaller width"),
            "{e}"
        );
        let e = format!("{:#}", ctx.check_fits("x", 1e300, "depth").unwrap_err());
        assert!(e.contains("1.000e300 bytes"), "{e}");
        // an estimate gone wrong never passes as fitting
        assert!(ctx.check_fits("x", f64::NAN, "depth").is_err());
    }
}
