//! What every experiment of a run shares: the run's seed, where data lives, the
//! datasets already loaded (each loaded once per run), threads and the memory
//! budget that sizes ensembles.

use crate::data::{DataSource, Dataset, DatasetName, Normalization};
use anyhow::Result;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Context {
    pub seed: u64,
    pub data_source: DataSource,
    pub threads: usize,
    /// Bytes an ensemble may use; ensembles are sized to stay under it.
    pub memory_budget: u64,
    datasets: HashMap<(DatasetName, Normalization), Arc<Dataset>>,
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

    /// The dataset, normalised as asked, loaded on first use.
    pub fn dataset(
        &mut self,
        name: DatasetName,
        normalization: Normalization,
    ) -> Result<Arc<Dataset>> {
        if let Some(d) = self.datasets.get(&(name, normalization)) {
            return Ok(d.clone());
        }
        let d = Arc::new(Dataset::load(name, normalization, &self.data_source)?);
        self.datasets.insert((name, normalization), d.clone());
        Ok(d)
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
