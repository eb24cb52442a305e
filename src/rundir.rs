//! A run directory says how it was made: the config as given and as resolved
//! (every sweep point with its defaults), metadata (versions, commit, threads,
//! seed, times, one entry per invocation), a log line per finished unit, and the
//! results as Parquet shards under `results/<experiment>/`.

use crate::results::{units_in, write_text};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// The version of libtorch this binary was built against.
pub const LIBTORCH_VERSION: &str = env!("INITLAB_LIBTORCH_VERSION");
/// The git commit this binary was built from ("unknown" outside a checkout), with
/// "-dirty" when its sources (src/, build.rs, Cargo.toml, Cargo.lock, assets/) differed.
pub const GIT_COMMIT: &str = env!("INITLAB_GIT_COMMIT");

/// One invocation of `initlab run` (or reproduce) on this directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invocation {
    pub started_at: String,
    pub finished_at: Option<String>,
    pub wall_time_s: Option<f64>,
    pub status: String,
    pub host: String,
    pub command: Vec<String>,
    pub threads: i64,
    pub shard: Option<String>,
    pub units_run: usize,
    pub units_skipped: usize,
}

/// Everything the metadata file records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub initlab_version: String,
    pub git_commit: String,
    pub libtorch_version: String,
    pub name: String,
    pub seed: u64,
    pub config_sha256: String,
    /// Per experiment: its kind, unit count and whatever the experiment records
    /// about its inputs (dataset checksums and normalisation statistics).
    pub experiments: BTreeMap<String, serde_json::Value>,
    pub invocations: Vec<Invocation>,
}

/// An open run directory.
pub struct RunDir {
    pub root: PathBuf,
    metadata_name: String,
    pub metadata: Metadata,
    created_now: bool,
    started: Instant,
    log: std::fs::File,
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl RunDir {
    /// Opens `root` for a run of a config whose resolved form is `resolved`:
    /// creates it, or resumes it if it was made by the same config, or refuses if
    /// it was made by another one.
    pub fn open(
        root: &Path,
        name: &str,
        seed: u64,
        source_text: &str,
        resolved: &str,
        threads: i64,
        shard: Option<String>,
    ) -> Result<Self> {
        let resolved_path = root.join("config.resolved.yaml");
        let created_now = !root.exists();
        if root.exists() {
            if !root.is_dir() {
                bail!(
                    "--out {} exists and is not a directory: choose another --out",
                    root.display()
                );
            }
            if resolved_path.exists() {
                let previous = std::fs::read_to_string(&resolved_path)
                    .with_context(|| format!("cannot read {}", resolved_path.display()))?;
                if previous != resolved {
                    let diff = first_difference(&previous, resolved);
                    bail!(
                        "run directory {} was made by a different config ({diff}); results would be mixed. \
                         Use another --out, or delete the directory to start over",
                        root.display()
                    );
                }
            } else if std::fs::read_dir(root)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .any(|e| !is_run_dir_entry(&e.file_name().to_string_lossy()))
                })
                .unwrap_or(false)
            {
                bail!(
                    "--out {} is a non-empty directory that is not an initlab run directory (no config.resolved.yaml): choose another --out",
                    root.display()
                );
            }
        }
        std::fs::create_dir_all(root.join("results")).with_context(|| {
            format!(
                "cannot create run directory {}: choose a writable --out",
                root.display()
            )
        })?;
        // Prove the directory is writable before any work starts.
        let probe = root.join(".write-test");
        std::fs::write(&probe, b"ok").with_context(|| {
            format!(
                "run directory {} is not writable: choose a writable --out",
                root.display()
            )
        })?;
        let _ = std::fs::remove_file(&probe);

        // Shards of one sweep may run at once into one directory (a SLURM array):
        // each keeps its own metadata file, which `initlab merge` joins.
        let metadata_name = match &shard {
            Some(s) => format!("metadata-shard-{}.json", s.replace('/', "-of-")),
            None => "metadata.json".to_string(),
        };
        let metadata_path = root.join(&metadata_name);
        let mut metadata = if metadata_path.exists() {
            let text = std::fs::read_to_string(&metadata_path)?;
            serde_json::from_str::<Metadata>(&text).with_context(|| {
                format!(
                    "{} is corrupt; delete it to start the metadata afresh",
                    metadata_path.display()
                )
            })?
        } else {
            Metadata {
                initlab_version: env!("CARGO_PKG_VERSION").into(),
                git_commit: GIT_COMMIT.into(),
                libtorch_version: LIBTORCH_VERSION.into(),
                name: name.into(),
                seed,
                config_sha256: crate::seed::short_hash(resolved),
                experiments: BTreeMap::new(),
                invocations: Vec::new(),
            }
        };
        // Later invocations may come from a newer build: record what made this one.
        metadata.initlab_version = env!("CARGO_PKG_VERSION").into();
        metadata.git_commit = GIT_COMMIT.into();
        metadata.libtorch_version = LIBTORCH_VERSION.into();
        metadata.invocations.push(Invocation {
            started_at: now_rfc3339(),
            finished_at: None,
            wall_time_s: None,
            status: "running".into(),
            host: hostname(),
            command: std::env::args().collect(),
            threads,
            shard,
            units_run: 0,
            units_skipped: 0,
        });
        if !root.join("config.yaml").exists() {
            write_text(&root.join("config.yaml"), source_text)?;
        }
        if !resolved_path.exists() {
            write_text(&resolved_path, resolved)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("log.txt"))
            .with_context(|| format!("cannot open {}", root.join("log.txt").display()))?;
        let dir = RunDir {
            root: root.to_path_buf(),
            metadata_name,
            metadata,
            created_now,
            started: Instant::now(),
            log,
        };
        dir.save_metadata()?;
        Ok(dir)
    }

    pub fn results_dir(&self, experiment: &str) -> PathBuf {
        self.root.join("results").join(experiment)
    }

    /// Unit ids already finished for an experiment.
    pub fn finished_units(&self, experiment: &str) -> Result<HashSet<String>> {
        Ok(units_in(&self.results_dir(experiment))?
            .into_keys()
            .collect())
    }

    /// All unit ids and the files holding them.
    pub fn unit_files(&self, experiment: &str) -> Result<HashMap<String, Vec<PathBuf>>> {
        units_in(&self.results_dir(experiment))
    }

    pub fn log_line(&mut self, line: &str) -> Result<()> {
        writeln!(self.log, "{} {line}", now_rfc3339()).context("writing log.txt")?;
        Ok(())
    }

    fn current(&mut self) -> &mut Invocation {
        self.metadata
            .invocations
            .last_mut()
            .expect("an invocation is open")
    }

    pub fn record_progress(&mut self, run: usize, skipped: usize) {
        let inv = self.current();
        inv.units_run = run;
        inv.units_skipped = skipped;
    }

    pub fn save_metadata(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.metadata)?;
        write_text(&self.root.join(&self.metadata_name), &(text + "\n"))
    }

    /// Closes the invocation with a status ("complete", "failed: ...").
    pub fn finish(&mut self, status: &str) -> Result<()> {
        let wall = self.started.elapsed().as_secs_f64();
        let inv = self.current();
        inv.finished_at = Some(now_rfc3339());
        inv.wall_time_s = Some(wall);
        inv.status = status.to_string();
        self.save_metadata()
    }

    /// After a failure before anything was computed, removes a directory this
    /// invocation created, so that bad input leaves no output behind.
    pub fn discard_if_empty(self) {
        let finished = units_in(&self.root.join("results"))
            .map(|u| u.len())
            .unwrap_or(1);
        if self.created_now && finished == 0 {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Whether a file name belongs to a run directory's own layout (so that a directory
/// holding only these, e.g. made a moment ago by a parallel shard, counts as a run).
fn is_run_dir_entry(name: &str) -> bool {
    matches!(
        name,
        "results"
            | "log.txt"
            | "config.yaml"
            | "config.resolved.yaml"
            | "figures"
            | "slurm"
            | ".write-test"
    ) || name.starts_with("metadata")
        || (name.starts_with('.') && name.ends_with(".part"))
}

fn first_difference(old: &str, new: &str) -> String {
    for (i, (a, b)) in old.lines().zip(new.lines()).enumerate() {
        if a != b {
            return format!("line {}: was `{}`, now `{}`", i + 1, a.trim(), b.trim());
        }
    }
    "the resolved configs differ in length".to_string()
}
