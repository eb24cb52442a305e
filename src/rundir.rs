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

/// The entries of a run directory's layout; each name is spelled here only, and
/// the other modules reach the paths through [`Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Config,
    ResolvedConfig,
    Results,
    Log,
    Locks,
    Quarantine,
    Figures,
    Slurm,
}

impl Entry {
    const ALL: [Entry; 8] = [
        Entry::Config,
        Entry::ResolvedConfig,
        Entry::Results,
        Entry::Log,
        Entry::Locks,
        Entry::Quarantine,
        Entry::Figures,
        Entry::Slurm,
    ];

    /// The file or folder name inside the run directory.
    pub const fn name(self) -> &'static str {
        match self {
            Entry::Config => "config.yaml",
            Entry::ResolvedConfig => "config.resolved.yaml",
            Entry::Results => "results",
            Entry::Log => "log.txt",
            Entry::Locks => "locks",
            Entry::Quarantine => "quarantine",
            Entry::Figures => "figures",
            Entry::Slurm => "slurm",
        }
    }
}

/// The name of the resolved config, which marks a directory as a run directory.
pub const RESOLVED_CONFIG_FILE: &str = Entry::ResolvedConfig.name();

/// Metadata files: `metadata.json` for a run of the whole sweep (and after a
/// merge), `metadata-shard-i-of-N.json` for each shard.
const METADATA_STEM: &str = "metadata";
const METADATA_EXTENSION: &str = ".json";
const LOCK_EXTENSION: &str = ".lock";
/// Taken shared by every shard and exclusively by a whole-sweep run.
const DIRECTORY_LOCK: &str = "directory.lock";
/// What `slurm/` holds for itself: the binary, the array script, the task logs.
const SLURM_BINARY: &str = "initlab";
const SLURM_SCRIPT: &str = "array.sbatch";
const SLURM_LOGS: &str = "logs";
pub const SLURM_OWN_NAMES: [&str; 3] = [SLURM_BINARY, SLURM_SCRIPT, SLURM_LOGS];

/// The paths of one run directory's layout, for every command that reads or
/// writes one (`run`, `merge`, `slurm`, `plot`, `report`).
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    root: &'a Path,
}

impl<'a> Layout<'a> {
    pub fn new(root: &'a Path) -> Self {
        Layout { root }
    }

    pub fn root(&self) -> &'a Path {
        self.root
    }

    pub fn entry(&self, entry: Entry) -> PathBuf {
        self.root.join(entry.name())
    }

    /// The config file as given.
    pub fn config(&self) -> PathBuf {
        self.entry(Entry::Config)
    }

    /// Every sweep point with its defaults; its presence makes a run directory.
    pub fn config_resolved(&self) -> PathBuf {
        self.entry(Entry::ResolvedConfig)
    }

    /// Whether the directory is a run directory (it has a resolved config).
    pub fn is_run_dir(&self) -> bool {
        self.config_resolved().is_file()
    }

    /// The metadata file of the whole sweep (the one a merge writes).
    pub fn metadata(&self) -> PathBuf {
        self.metadata_of(None)
    }

    /// The metadata file of one part: a shard's own (`"2/3"`), or the whole sweep's.
    pub fn metadata_of(&self, shard: Option<&str>) -> PathBuf {
        let name = match shard {
            Some(_) => format!("{METADATA_STEM}-{}{METADATA_EXTENSION}", part_name(shard)),
            None => format!("{METADATA_STEM}{METADATA_EXTENSION}"),
        };
        self.root.join(name)
    }

    /// Every metadata file of the directory (the main one and per-shard ones).
    pub fn metadata_files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| is_metadata_file(p))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    pub fn results(&self) -> PathBuf {
        self.entry(Entry::Results)
    }

    /// The folder of one experiment's Parquet shards.
    pub fn results_of(&self, experiment: &str) -> PathBuf {
        self.results().join(experiment)
    }

    /// One experiment's Parquet shards, sorted.
    pub fn shards(&self, experiment: &str) -> Result<Vec<PathBuf>> {
        parquet_files(&self.results_of(experiment))
    }

    /// Whether `results/` holds any Parquet shard (`None`: it cannot be listed).
    fn has_shards(&self) -> Option<bool> {
        parquet_files(&self.results()).ok().map(|f| !f.is_empty())
    }

    pub fn log(&self) -> PathBuf {
        self.entry(Entry::Log)
    }

    pub fn locks(&self) -> PathBuf {
        self.entry(Entry::Locks)
    }

    /// Shared by every shard, exclusive for a run of the whole sweep.
    fn directory_lock(&self) -> PathBuf {
        self.locks().join(DIRECTORY_LOCK)
    }

    /// One part's lock: a shard's (`"2/3"`), or the whole sweep's.
    fn part_lock(&self, shard: Option<&str>) -> PathBuf {
        self.locks()
            .join(format!("{}{LOCK_EXTENSION}", part_name(shard)))
    }

    /// Where damaged shards of one experiment are moved aside.
    pub fn quarantine_of(&self, experiment: &str) -> PathBuf {
        self.entry(Entry::Quarantine).join(experiment)
    }

    pub fn figures(&self) -> PathBuf {
        self.entry(Entry::Figures)
    }

    /// The copy of the binary the SLURM array tasks run.
    pub fn slurm_binary(&self) -> PathBuf {
        self.entry(Entry::Slurm).join(SLURM_BINARY)
    }

    /// The SLURM array script.
    pub fn slurm_script(&self) -> PathBuf {
        self.entry(Entry::Slurm).join(SLURM_SCRIPT)
    }

    /// A file beside the script in `slurm/` (the config copy).
    pub fn slurm_file(&self, name: &std::ffi::OsStr) -> PathBuf {
        self.entry(Entry::Slurm).join(name)
    }

    pub fn slurm_logs(&self) -> PathBuf {
        self.entry(Entry::Slurm).join(SLURM_LOGS)
    }

    /// An array task's log (`task` may be a pattern such as sbatch's `%a`).
    pub fn slurm_task_log(&self, task: &str, extension: &str) -> PathBuf {
        self.slurm_logs().join(format!("task-{task}.{extension}"))
    }
}

/// Whether `path` names a metadata file (the main one or a shard's).
fn is_metadata_file(path: &Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| n.starts_with(METADATA_STEM) && n.ends_with(METADATA_EXTENSION))
}

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

impl Metadata {
    /// The metadata file at `path` as earlier invocations left it, or a new one;
    /// either way recording this build, since later invocations may come from a
    /// newer one than the first.
    fn load_or_new(path: &Path, name: &str, seed: u64, resolved: &str) -> Result<Metadata> {
        let mut metadata = if path.exists() {
            let text = std::fs::read_to_string(path)?;
            serde_json::from_str::<Metadata>(&text).with_context(|| {
                format!(
                    "{} is corrupt; delete it to start the metadata afresh",
                    path.display()
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
        metadata.initlab_version = env!("CARGO_PKG_VERSION").into();
        metadata.git_commit = GIT_COMMIT.into();
        metadata.libtorch_version = LIBTORCH_VERSION.into();
        Ok(metadata)
    }
}

impl Invocation {
    /// This process's invocation, running from now.
    fn starting(threads: i64, shard: Option<String>) -> Invocation {
        Invocation {
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
        }
    }
}

/// An open run directory, held by this process for its part of the sweep.
pub struct RunDir {
    pub root: PathBuf,
    /// This part's own metadata file (see [`Layout::metadata_of`]).
    metadata_path: PathBuf,
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
        let layout = Layout::new(root);
        // A lock file deleted and recreated between our open and our lock (by a
        // failed run discarding its directory) would lock nothing: retry then.
        for _ in 0..5 {
            let directory_path = layout.directory_lock();
            let directory = open_lock_file(&directory_path)?;
            let exclusive = shard.is_none();
            let taken = if exclusive {
                directory.try_lock()
            } else {
                directory.try_lock_shared()
            };
            let part_path = layout.part_lock(shard);
            match taken {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) if exclusive && is_held(&part_path) => {
                    bail!(same_part_message(root, &part_path, shard))
                }
                Err(TryLockError::WouldBlock) => bail!(
                    "run directory {} is being written by {}; {}. Wait for it to finish (or stop it), then rerun: the run resumes",
                    root.display(),
                    holders(layout, shard),
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
fn holders(layout: Layout, shard: Option<&str>) -> String {
    let (mine, directory) = (layout.part_lock(shard), layout.directory_lock());
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(layout.locks()) {
        for e in entries.flatten() {
            let (path, name) = (e.path(), e.file_name().to_string_lossy().to_string());
            if path == mine || path == directory || !name.ends_with(LOCK_EXTENSION) {
                continue;
            }
            if is_held(&path) {
                found.push(format!(
                    "{} ({})",
                    holder_of(&path),
                    name.trim_end_matches(LOCK_EXTENSION)
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

/// What is wrong, if anything, with the unit-key versions a run directory's
/// metadata files record ("was made by ..."): each must be this build's
/// [`KEY_VERSION`], since unit ids (what a resume skips, what a merge expects)
/// and seeds are derived by it.
pub fn key_version_problem(dir: &Path) -> Result<Option<String>> {
    for path in Layout::new(dir).metadata_files() {
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
            let name = file_name(&path);
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
    let results = Layout::new(root).results();
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
        let layout = Layout::new(root);
        let resolved_path = layout.config_resolved();
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
        std::fs::create_dir_all(layout.locks()).with_context(|| {
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
        let layout = Layout::new(root);
        let resolved_path = layout.config_resolved();
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
        std::fs::create_dir_all(layout.results()).with_context(|| {
            format!(
                "cannot create run directory {}: choose a writable --out",
                root.display()
            )
        })?;
        let removed = remove_stale_temporaries(root, hold.exclusive);

        // Shards of one sweep may run at once into one directory (a SLURM array):
        // each keeps its own metadata file, which `initlab merge` joins.
        let metadata_path = layout.metadata_of(shard.as_deref());
        let mut metadata = Metadata::load_or_new(&metadata_path, name, seed, resolved)?;
        metadata
            .invocations
            .push(Invocation::starting(threads, shard));
        if !layout.config().exists() {
            write_text(&layout.config(), source_text)?;
        }
        if !resolved_path.exists() {
            write_text(&resolved_path, resolved)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout.log())
            .with_context(|| format!("cannot open {}", layout.log().display()))?;
        let mut dir = RunDir {
            root: root.to_path_buf(),
            metadata_path,
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

    /// The paths of this directory's layout.
    pub fn layout(&self) -> Layout<'_> {
        Layout::new(&self.root)
    }

    pub fn results_dir(&self, experiment: &str) -> PathBuf {
        self.layout().results_of(experiment)
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
        let folder = self.layout().quarantine_of(experiment);
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
        let mut sources = vec![(file_name(&self.metadata_path), self.metadata.clone())];
        for path in self.layout().metadata_files() {
            if path == self.metadata_path {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let other: Metadata = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is corrupt; delete it to start its metadata afresh",
                    path.display()
                )
            })?;
            sources.push((file_name(&path), other));
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
            .with_context(|| format!("writing {}", self.layout().log().display()))
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
        write_text(&self.metadata_path, &(text + "\n"))
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
            metadata_path,
            hold,
            log,
            ..
        } = self;
        drop(log);
        let layout = Layout::new(&root);
        let others_wrote = layout.metadata_files().iter().any(|p| *p != metadata_path);
        if others_wrote || layout.has_shards().unwrap_or(true) {
            return;
        }
        drop(hold.part);
        discard_held(&root, hold.directory);
    }
}

/// Removes a directory created by this process if no other process holds it.
fn discard_new(root: &Path) {
    if let Ok(directory) = open_lock_file(&Layout::new(root).directory_lock()) {
        discard_held(root, directory);
    }
}

/// Removes `root` if its directory lock can be taken exclusively, i.e. no other
/// process holds it (a shard holds it shared from its start to its end).
fn discard_held(root: &Path, directory: File) {
    let _ = directory.unlock();
    if directory.try_lock().is_ok() && Layout::new(root).has_shards() == Some(false) {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// Whether a file name belongs to a run directory's own layout (so that a directory
/// holding only these, e.g. made a moment ago by a parallel shard, counts as a run).
fn is_run_dir_entry(name: &str) -> bool {
    Entry::ALL.iter().any(|e| e.name() == name)
        || name == ".write-test"
        || name.starts_with(METADATA_STEM)
        || (name.starts_with('.') && name.ends_with(".part"))
}

/// The last component of `path`, as text.
fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn first_difference(old: &str, new: &str) -> String {
    for (i, (a, b)) in old.lines().zip(new.lines()).enumerate() {
        if a != b {
            return format!("line {}: was `{}`, now `{}`", i + 1, a.trim(), b.trim());
        }
    }
    "the resolved configs differ in length".to_string()
}
