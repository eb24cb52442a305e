//! A run directory says how it was made: the config as given and as resolved
//! (every sweep point with its defaults), metadata (versions, commit, threads,
//! seed, times, one entry per invocation), a log line per finished unit, and the
//! results as Parquet shards under `results/<experiment>/`.

use crate::results::{parquet_files, stale_temporary, write_text};
use crate::seed::KEY_VERSION;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// The version of libtorch this binary was built against.
pub const LIBTORCH_VERSION: &str = env!("INITLAB_LIBTORCH_VERSION");
/// The git commit this binary was built from ("unknown" outside a checkout), with
/// "-dirty" when its sources (src/, build.rs, Cargo.toml, Cargo.lock, assets/) differed.
pub const GIT_COMMIT: &str = env!("INITLAB_GIT_COMMIT");

/// The file and folder names of a run directory's layout.
pub const CONFIG_FILE: &str = "config.yaml";
pub const RESOLVED_CONFIG_FILE: &str = "config.resolved.yaml";
pub const METADATA_FILE: &str = "metadata.json";
pub const RESULTS_DIR: &str = "results";
pub const LOG_FILE: &str = "log.txt";
pub const LOCKS_DIR: &str = "locks";
pub const QUARANTINE_DIR: &str = "quarantine";
/// Taken shared by every shard and exclusively by a whole-sweep run.
const DIRECTORY_LOCK: &str = "directory.lock";

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
    /// The build that ran this invocation (directories made before these fields
    /// existed read back without them).
    #[serde(default)]
    pub initlab_version: Option<String>,
    #[serde(default)]
    pub git_commit: Option<String>,
    /// SHA-256 of every dataset file this invocation read, by file name.
    #[serde(default)]
    pub dataset_sha256: BTreeMap<String, String>,
}

/// Everything the metadata file records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub initlab_version: String,
    pub git_commit: String,
    pub libtorch_version: String,
    /// The encoding this directory's unit ids and seeds were derived with
    /// ([`KEY_VERSION`]); empty in directories made before it was recorded.
    #[serde(default)]
    pub unit_key_version: String,
    pub name: String,
    pub seed: u64,
    pub config_sha256: String,
    /// Per experiment: its kind, unit count and whatever the experiment records
    /// about its inputs (dataset checksums and normalisation statistics).
    pub experiments: BTreeMap<String, serde_json::Value>,
    pub invocations: Vec<Invocation>,
}

/// An open run directory, held by this process for its part of the sweep.
pub struct RunDir {
    pub root: PathBuf,
    metadata_name: String,
    pub metadata: Metadata,
    created_now: bool,
    started: Instant,
    log: File,
    hold: Hold,
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

/// The part of a sweep an invocation writes: `all`, or `shard-2-of-3`.
fn part_name(shard: Option<&str>) -> String {
    match shard {
        Some(s) => format!("shard-{}", s.replace('/', "-of-")),
        None => "all".to_string(),
    }
}

/// This process's locks on a run directory (`flock`, released by the kernel when
/// the process dies, so a killed run never leaves a stale lock). The directory
/// lock is shared among shards, which run side by side, and exclusive for a run
/// of the whole sweep; the part lock is exclusive, so one part has one writer.
struct Hold {
    directory: File,
    part: File,
    exclusive: bool,
}

impl Hold {
    fn take(root: &Path, shard: Option<&str>) -> Result<Hold> {
        let locks = root.join(LOCKS_DIR);
        // A lock file deleted and recreated between our open and our lock (by a
        // failed run discarding its directory) would lock nothing: retry then.
        for _ in 0..5 {
            let directory_path = locks.join(DIRECTORY_LOCK);
            let directory = open_lock_file(&directory_path)?;
            let exclusive = shard.is_none();
            let taken = if exclusive {
                directory.try_lock()
            } else {
                directory.try_lock_shared()
            };
            let part_path = locks.join(format!("{}.lock", part_name(shard)));
            match taken {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) if exclusive && is_held(&part_path) => {
                    bail!(same_part_message(root, &part_path, shard))
                }
                Err(TryLockError::WouldBlock) => bail!(
                    "run directory {} is being written by {}; {}. Wait for it to finish (or stop it), then rerun: the run resumes",
                    root.display(),
                    holders(&locks, shard),
                    if exclusive {
                        "a run of the whole sweep cannot share it with another writer"
                    } else {
                        "a shard cannot run beside a run of the whole sweep"
                    }
                ),
                Err(TryLockError::Error(e)) => {
                    return Err(e)
                        .with_context(|| format!("cannot lock {}", directory_path.display()));
                }
            }
            if !same_file(&directory, &directory_path) {
                continue;
            }
            let mut part = open_lock_file(&part_path)?;
            match part.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => bail!(same_part_message(root, &part_path, shard)),
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", part_path.display()));
                }
            }
            // Who holds the part, for the message a second writer gets.
            let holder = format!(
                "pid {} on host {} since {} (`{}`)",
                std::process::id(),
                hostname(),
                now_rfc3339(),
                std::env::args().collect::<Vec<_>>().join(" ")
            );
            part.set_len(0)
                .and_then(|_| part.write_all(holder.as_bytes()))
                .and_then(|_| part.sync_all())
                .with_context(|| format!("cannot write {}", part_path.display()))?;
            return Ok(Hold {
                directory,
                part,
                exclusive,
            });
        }
        bail!(
            "cannot lock run directory {}: its lock files keep being replaced; is another process deleting it?",
            root.display()
        )
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create the lock file {}: choose a writable --out",
                path.display()
            )
        })
}

/// Whether an open file is still the one at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn same_part_message(root: &Path, part_path: &Path, shard: Option<&str>) -> String {
    format!(
        "run directory {} is being written by {} for the same part ({}); two writers would mix their results. \
         Wait for it to finish (or stop it), then rerun: the run resumes",
        root.display(),
        holder_of(part_path),
        shard.map_or("the whole sweep".to_string(), |s| format!("shard {s}")),
    )
}

/// Whether some process holds the lock file at `path` now.
fn is_held(path: &Path) -> bool {
    File::open(path)
        .map(|f| matches!(f.try_lock_shared(), Err(TryLockError::WouldBlock)))
        .unwrap_or(false)
}

/// What a part's lock file says of its holder.
fn holder_of(path: &Path) -> String {
    let mut text = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() {
        "another initlab process".to_string()
    } else {
        text.to_string()
    }
}

/// The holders of the parts other than `shard`'s that are locked now.
fn holders(locks: &Path, shard: Option<&str>) -> String {
    let mine = format!("{}.lock", part_name(shard));
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(locks) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name == mine || name == DIRECTORY_LOCK || !name.ends_with(".lock") {
                continue;
            }
            if is_held(&e.path()) {
                found.push(format!(
                    "{} ({})",
                    holder_of(&e.path()),
                    name.trim_end_matches(".lock")
                ));
            }
        }
    }
    if found.is_empty() {
        "another initlab process".to_string()
    } else {
        found.sort();
        found.join("; ")
    }
}

/// Every metadata file of a run directory (the main one and per-shard ones).
pub fn metadata_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    n.starts_with("metadata") && n.ends_with(".json")
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// What is wrong, if anything, with the unit-key versions a run directory's
/// metadata files record ("was made by ..."): each must be this build's
/// [`KEY_VERSION`], since unit ids (what a resume skips, what a merge expects)
/// and seeds are derived by it.
pub fn key_version_problem(dir: &Path) -> Result<Option<String>> {
    for path in metadata_files(dir) {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let meta: serde_json::Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is corrupt; delete it to start its metadata afresh",
                path.display()
            )
        })?;
        let found = meta.get("unit_key_version").and_then(|v| v.as_str());
        if found != Some(KEY_VERSION) {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let who = match found {
                Some(v) => format!("another initlab (its {name} records unit-key version `{v}`)"),
                None => format!("an older initlab (its {name} records no unit-key version)"),
            };
            return Ok(Some(format!(
                "was made by {who}, whose unit ids and seeds are derived differently from this one's (`{KEY_VERSION}`)"
            )));
        }
    }
    Ok(None)
}

/// Whether a directory holds nothing but a run directory's own layout.
fn holds_only_run_dir_entries(root: &Path) -> bool {
    std::fs::read_dir(root)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .all(|e| is_run_dir_entry(&e.file_name().to_string_lossy()))
        })
        .unwrap_or(true)
}

/// Removes the temporary files of writers that are gone (see
/// [`stale_temporary`]) from the directory and its results folders.
fn remove_stale_temporaries(root: &Path, exclusive: bool) -> Vec<PathBuf> {
    let mut folders = vec![root.to_path_buf()];
    let results = root.join(RESULTS_DIR);
    folders.push(results.clone());
    if let Ok(entries) = std::fs::read_dir(&results) {
        folders.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let mut removed = Vec::new();
    for folder in folders {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if stale_temporary(&name, exclusive) && std::fs::remove_file(e.path()).is_ok() {
                removed.push(e.path());
            }
        }
    }
    removed
}

/// The SHA-256 of every dataset file an experiment's recorded inputs name, by
/// file name (the folder may move between machines; the bytes may not change).
pub fn dataset_digests(inputs: &serde_json::Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![inputs];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                if let (
                    Some(serde_json::Value::String(path)),
                    Some(serde_json::Value::String(sha)),
                ) = (map.get("path"), map.get("sha256"))
                {
                    let name = Path::new(path)
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_else(|| path.clone());
                    out.insert(name, sha.clone());
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(list) => stack.extend(list),
            _ => {}
        }
    }
    out
}

impl RunDir {
    /// Opens `root` for a run of a config whose resolved form is `resolved`:
    /// creates it, or resumes it if it was made by the same config, or refuses if
    /// it was made by another one, or if another process writes the same part.
    pub fn open(
        root: &Path,
        name: &str,
        seed: u64,
        source_text: &str,
        resolved: &str,
        threads: i64,
        shard: Option<String>,
    ) -> Result<Self> {
        let resolved_path = root.join(RESOLVED_CONFIG_FILE);
        let created_now = !root.exists();
        if !created_now {
            if !root.is_dir() {
                bail!(
                    "--out {} exists and is not a directory: choose another --out",
                    root.display()
                );
            }
            if !resolved_path.exists() && !holds_only_run_dir_entries(root) {
                bail!(
                    "--out {} is a non-empty directory that is not an initlab run directory (no {RESOLVED_CONFIG_FILE}): choose another --out",
                    root.display()
                );
            }
        }
        std::fs::create_dir_all(root.join(LOCKS_DIR)).with_context(|| {
            format!(
                "cannot create run directory {}: choose a writable --out",
                root.display()
            )
        })?;
        let hold = Hold::take(root, shard.as_deref())?;
        let dir = Self::open_held(
            root,
            hold,
            created_now,
            (name, seed, source_text, resolved, threads, shard),
        );
        if dir.is_err() && created_now {
            discard_new(root);
        }
        dir
    }

    /// The rest of [`RunDir::open`], under the locks.
    fn open_held(
        root: &Path,
        hold: Hold,
        created_now: bool,
        (name, seed, source_text, resolved, threads, shard): (
            &str,
            u64,
            &str,
            &str,
            i64,
            Option<String>,
        ),
    ) -> Result<Self> {
        let resolved_path = root.join(RESOLVED_CONFIG_FILE);
        if let Some(problem) = key_version_problem(root)? {
            bail!(
                "run directory {} {problem}; resuming would mix results of both derivations. \
                 Rerun into a new --out directory, or delete the directory to start over",
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
        }
        std::fs::create_dir_all(root.join(RESULTS_DIR)).with_context(|| {
            format!(
                "cannot create run directory {}: choose a writable --out",
                root.display()
            )
        })?;
        let removed = remove_stale_temporaries(root, hold.exclusive);

        // Shards of one sweep may run at once into one directory (a SLURM array):
        // each keeps its own metadata file, which `initlab merge` joins.
        let metadata_name = match &shard {
            Some(s) => format!("metadata-shard-{}.json", s.replace('/', "-of-")),
            None => METADATA_FILE.to_string(),
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
                unit_key_version: KEY_VERSION.into(),
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
            initlab_version: Some(env!("CARGO_PKG_VERSION").into()),
            git_commit: Some(GIT_COMMIT.into()),
            dataset_sha256: BTreeMap::new(),
        });
        if !root.join(CONFIG_FILE).exists() {
            write_text(&root.join(CONFIG_FILE), source_text)?;
        }
        if !resolved_path.exists() {
            write_text(&resolved_path, resolved)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join(LOG_FILE))
            .with_context(|| format!("cannot open {}", root.join(LOG_FILE).display()))?;
        let mut dir = RunDir {
            root: root.to_path_buf(),
            metadata_name,
            metadata,
            created_now,
            started: Instant::now(),
            log,
            hold,
        };
        for path in &removed {
            dir.log_line(&format!(
                "removed {}, a temporary file left by a writer that is gone",
                path.display()
            ))?;
        }
        dir.save_metadata()?;
        Ok(dir)
    }

    pub fn results_dir(&self, experiment: &str) -> PathBuf {
        self.root.join(RESULTS_DIR).join(experiment)
    }

    /// Unit ids already finished for an experiment, each shard read once; a shard
    /// that cannot be read is moved to `quarantine/` (its units then run again)
    /// and the log and the terminal say so.
    pub fn finished_units(&mut self, experiment: &str) -> Result<HashSet<String>> {
        let scan = crate::results::scan_shards(&self.results_dir(experiment))?;
        for (path, why) in &scan.damaged {
            let moved = self.quarantine(experiment, path)?;
            let line = format!(
                "results shard {} is damaged ({why}); moved to {} and its units will be computed again",
                path.display(),
                moved.display()
            );
            eprintln!("warning: {line}");
            self.log_line(&line)?;
        }
        Ok(scan.units.into_keys().collect())
    }

    /// Moves a damaged shard out of `results/`, keeping it for inspection.
    fn quarantine(&self, experiment: &str, path: &Path) -> Result<PathBuf> {
        let folder = self.root.join(QUARANTINE_DIR).join(experiment);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let target = folder.join(format!(
            "{name}.{}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::rename(path, &target).with_context(|| {
            format!(
                "results shard {} is damaged and cannot be moved aside to {}: move or delete it by hand, then rerun",
                path.display(),
                target.display()
            )
        })?;
        Ok(target)
    }

    /// All unit ids and the files holding them.
    pub fn unit_files(&self, experiment: &str) -> Result<HashMap<String, Vec<PathBuf>>> {
        crate::results::units_in(&self.results_dir(experiment))
    }

    /// Records an experiment's inputs, refusing (unless `allow_change`) dataset
    /// files whose bytes differ from those any earlier invocation of any part
    /// recorded: results computed from two datasets must not mix silently.
    pub fn record_inputs(
        &mut self,
        experiment: &str,
        kind: &str,
        units: usize,
        inputs: serde_json::Value,
        allow_change: bool,
    ) -> Result<()> {
        let now = dataset_digests(&inputs);
        if !allow_change {
            for (file, before) in self.recorded_digests(experiment)? {
                let name = file.clone();
                if let Some(after) = now.get(&name)
                    && *after != before.0
                {
                    bail!(
                        "experiment `{experiment}`: dataset file {name} has SHA-256 {after}, but the results in {} were computed from a file of that name with SHA-256 {} (recorded in {}); results from two datasets would mix. \
                         Point --data-dir at the original files, use another --out, or pass --allow-data-change to mix them knowingly",
                        self.root.display(),
                        before.0,
                        before.1
                    );
                }
            }
        }
        self.current().dataset_sha256.extend(now);
        self.metadata.experiments.insert(
            experiment.to_string(),
            serde_json::json!({ "kind": kind, "units": units, "inputs": inputs }),
        );
        Ok(())
    }

    /// Dataset digests recorded for an experiment by every metadata file of the
    /// directory (all parts), with the file that recorded each.
    fn recorded_digests(&self, experiment: &str) -> Result<BTreeMap<String, (String, String)>> {
        let mut out = BTreeMap::new();
        let mut sources = vec![(self.metadata_name.clone(), self.metadata.clone())];
        for entry in std::fs::read_dir(&self.root)
            .with_context(|| format!("cannot list {}", self.root.display()))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            if name == self.metadata_name
                || !name.starts_with("metadata")
                || !name.ends_with(".json")
            {
                continue;
            }
            let text = std::fs::read_to_string(entry.path())
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            let other: Metadata = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is corrupt; delete it to start its metadata afresh",
                    entry.path().display()
                )
            })?;
            sources.push((name, other));
        }
        for (source, meta) in sources {
            if let Some(exp) = meta.experiments.get(experiment) {
                for (file, sha) in dataset_digests(&exp["inputs"]) {
                    out.entry(file).or_insert((sha, source.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Appends one timestamped line; written with one `write_all` on a file opened
    /// for appending, so lines of shards sharing the log never interleave.
    pub fn log_line(&mut self, line: &str) -> Result<()> {
        let text = format!("{} {line}\n", now_rfc3339());
        self.log
            .write_all(text.as_bytes())
            .with_context(|| format!("writing {}", self.root.join(LOG_FILE).display()))
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
    /// invocation created, so that bad input leaves no output behind; never one
    /// that another process holds or has written results or metadata into.
    pub fn discard_if_empty(self) {
        if !self.created_now {
            return;
        }
        let RunDir {
            root,
            metadata_name,
            hold,
            log,
            ..
        } = self;
        drop(log);
        let others_wrote = std::fs::read_dir(&root)
            .map(|d| {
                d.flatten().any(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.starts_with("metadata") && n != metadata_name
                })
            })
            .unwrap_or(true);
        let has_results = parquet_files(&root.join(RESULTS_DIR))
            .map(|f| !f.is_empty())
            .unwrap_or(true);
        if others_wrote || has_results {
            return;
        }
        drop(hold.part);
        discard_held(&root, hold.directory);
    }
}

/// Removes a directory created by this process if no other process holds it.
fn discard_new(root: &Path) {
    if let Ok(directory) = open_lock_file(&root.join(LOCKS_DIR).join(DIRECTORY_LOCK)) {
        discard_held(root, directory);
    }
}

/// Removes `root` if its directory lock can be taken exclusively, i.e. no other
/// process holds it (a shard holds it shared from its start to its end).
fn discard_held(root: &Path, directory: File) {
    let _ = directory.unlock();
    if directory.try_lock().is_ok()
        && parquet_files(&root.join(RESULTS_DIR))
            .map(|f| f.is_empty())
            .unwrap_or(false)
    {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// Whether a file name belongs to a run directory's own layout (so that a directory
/// holding only these, e.g. made a moment ago by a parallel shard, counts as a run).
fn is_run_dir_entry(name: &str) -> bool {
    matches!(
        name,
        RESULTS_DIR
            | LOG_FILE
            | CONFIG_FILE
            | RESOLVED_CONFIG_FILE
            | LOCKS_DIR
            | QUARANTINE_DIR
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
