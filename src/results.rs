//! Results as tidy tables: a small row builder, Parquet files written atomically
//! (a temporary name, fsync, rename: no half-written file ever has a final name),
//! and reading back which work units a run directory already holds.

use anyhow::{Context, Result, bail};
use polars::prelude::{
    Column, DataFrame, KeyValueMetadata, NamedFrom, ParquetCompression, ParquetReader,
    ParquetWriter, PlSmallStr, SerReader, Series,
};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    /// A missing float (for example an undefined statistic).
    NullFloat,
    /// A list of floats (a curve) in one cell.
    FloatList(Vec<f64>),
    IntList(Vec<i64>),
}

/// `From` for each type a cell takes, into its variant (`as` widens the integer
/// and float types to the column's).
macro_rules! cell_from {
    ($($variant:ident($column:ty): $($t:ty),+;)*) => {
        $($(impl From<$t> for Cell {
            fn from(v: $t) -> Self {
                Cell::$variant(v as $column)
            }
        })+)*
    };
}
cell_from! {
    Int(i64): i64, usize, u64;
    Float(f64): f64, f32;
    Bool(bool): bool;
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Str(v.to_string())
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Str(v)
    }
}

#[derive(Debug, Clone)]
enum ColumnData {
    Int(Vec<i64>),
    Float(Vec<Option<f64>>),
    Str(Vec<String>),
    Bool(Vec<bool>),
    FloatList(Vec<Vec<f64>>),
    IntList(Vec<Vec<i64>>),
}

/// Builds a table row by row; every row must have the same columns in the same order.
#[derive(Debug, Clone, Default)]
pub struct Table {
    names: Vec<String>,
    columns: Vec<ColumnData>,
    rows: usize,
}

impl Table {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends a row given as (column, value) pairs.
    pub fn push(&mut self, row: Vec<(&str, Cell)>) {
        if self.rows == 0 && self.names.is_empty() {
            for (name, cell) in &row {
                self.names.push(name.to_string());
                self.columns.push(match cell {
                    Cell::Int(_) => ColumnData::Int(Vec::new()),
                    Cell::Float(_) | Cell::NullFloat => ColumnData::Float(Vec::new()),
                    Cell::Str(_) => ColumnData::Str(Vec::new()),
                    Cell::Bool(_) => ColumnData::Bool(Vec::new()),
                    Cell::FloatList(_) => ColumnData::FloatList(Vec::new()),
                    Cell::IntList(_) => ColumnData::IntList(Vec::new()),
                });
            }
        }
        assert_eq!(
            row.len(),
            self.names.len(),
            "row has {} columns, table has {}",
            row.len(),
            self.names.len()
        );
        for (i, (name, cell)) in row.into_iter().enumerate() {
            assert_eq!(name, self.names[i], "column order differs between rows");
            match (&mut self.columns[i], cell) {
                (ColumnData::Int(v), Cell::Int(x)) => v.push(x),
                (ColumnData::Float(v), Cell::Float(x)) => v.push(Some(x)),
                (ColumnData::Float(v), Cell::NullFloat) => v.push(None),
                (ColumnData::Float(v), Cell::Int(x)) => v.push(Some(x as f64)),
                (ColumnData::Str(v), Cell::Str(x)) => v.push(x),
                (ColumnData::Bool(v), Cell::Bool(x)) => v.push(x),
                (ColumnData::FloatList(v), Cell::FloatList(x)) => v.push(x),
                (ColumnData::IntList(v), Cell::IntList(x)) => v.push(x),
                (_, cell) => panic!("column `{name}` changed type (got {cell:?})"),
            }
        }
        self.rows += 1;
    }

    /// Appends every row of another table with the same columns.
    pub fn extend(&mut self, other: Table) {
        if self.names.is_empty() {
            *self = other;
            return;
        }
        if other.names.is_empty() {
            return;
        }
        assert_eq!(self.names, other.names, "tables with different columns");
        for (mine, theirs) in self.columns.iter_mut().zip(other.columns) {
            match (mine, theirs) {
                (ColumnData::Int(a), ColumnData::Int(b)) => a.extend(b),
                (ColumnData::Float(a), ColumnData::Float(b)) => a.extend(b),
                (ColumnData::Str(a), ColumnData::Str(b)) => a.extend(b),
                (ColumnData::Bool(a), ColumnData::Bool(b)) => a.extend(b),
                (ColumnData::FloatList(a), ColumnData::FloatList(b)) => a.extend(b),
                (ColumnData::IntList(a), ColumnData::IntList(b)) => a.extend(b),
                _ => panic!("tables with different column types"),
            }
        }
        self.rows += other.rows;
    }

    pub fn to_dataframe(&self) -> Result<DataFrame> {
        let columns: Vec<Column> = self
            .names
            .iter()
            .zip(&self.columns)
            .map(|(name, data)| {
                let name = PlSmallStr::from(name.as_str());
                match data {
                    ColumnData::Int(v) => Column::new(name, v),
                    ColumnData::Float(v) => Column::new(name, v),
                    ColumnData::Str(v) => Column::new(name, v),
                    ColumnData::Bool(v) => Column::new(name, v),
                    ColumnData::FloatList(v) => {
                        list_column(name, v.iter().map(|l| Series::new(PlSmallStr::EMPTY, l)))
                    }
                    ColumnData::IntList(v) => {
                        list_column(name, v.iter().map(|l| Series::new(PlSmallStr::EMPTY, l)))
                    }
                }
            })
            .collect();
        DataFrame::new_infer_height(columns).context("building a results table")
    }
}

/// A column whose cells are lists: one Series per row.
fn list_column(name: PlSmallStr, rows: impl Iterator<Item = Series>) -> Column {
    Column::new(name, rows.collect::<Vec<Series>>())
}

/// Writes `path` atomically: to a temporary file of its own first (see
/// [`temporary_name`]), fsynced, renamed into place, then the directory fsynced
/// so that the rename itself survives a power loss.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .context("output path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(temporary_name(&file_name));
    let result = (|| -> Result<()> {
        // create_new: never write into a file another process also believes is its own.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Flushes a directory's entries (a rename is only durable once its directory is).
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

/// `.<file>.<host>.<pid>.<random>.part`: unique per writer, so two processes never
/// share a temporary file, and [`stale_temporary`] can tell a dead writer's leftovers.
pub fn temporary_name(file_name: &str) -> String {
    format!(
        ".{file_name}.{}.{}.{:08x}.part",
        crate::rundir::hostname(),
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Whether a leftover temporary file belongs to a writer that is gone: one of this
/// host whose process no longer exists, or any at all when `exclusive` (the caller
/// holds the run directory alone, so nobody else can be writing). Other hosts'
/// files are left alone: their processes cannot be seen from here.
pub fn stale_temporary(name: &str, exclusive: bool) -> bool {
    let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".part")) else {
        return false;
    };
    if exclusive {
        return true;
    }
    // [random, pid, "file.host"] when the name is one of ours (host names may hold dots).
    let parts: Vec<&str> = stem.rsplitn(3, '.').collect();
    let [_, pid, file_and_host] = parts.as_slice() else {
        return false;
    };
    let this_host = format!(".{}", crate::rundir::hostname());
    match pid.parse::<u32>() {
        Ok(pid) => {
            file_and_host.ends_with(&this_host) && !Path::new(&format!("/proc/{pid}")).exists()
        }
        Err(_) => false,
    }
}

/// Writes a DataFrame as Parquet, atomically, with key-value metadata saying how it was made.
pub fn write_parquet(
    path: &Path,
    df: &mut DataFrame,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let kv: Vec<(String, String)> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    write_atomic(path, |file| {
        ParquetWriter::new(file)
            .with_compression(ParquetCompression::Zstd(None))
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(kv)))
            .finish(df)
            .with_context(|| format!("writing Parquet {}", path.display()))?;
        Ok(())
    })
}

/// Writes text atomically.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, |f| {
        f.write_all(text.as_bytes())?;
        Ok(())
    })
}

/// Reads a Parquet file.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    ParquetReader::new(file)
        .finish()
        .with_context(|| format!("cannot read Parquet {}", path.display()))
}

/// Every `.parquet` file under `dir`, recursively, sorted.
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What the Parquet shards of one results folder hold.
#[derive(Debug, Default)]
pub struct ShardScan {
    /// Each `work_unit` id with the files holding it.
    pub units: HashMap<String, Vec<PathBuf>>,
    /// Files that cannot be used, with the reason: not Parquet, truncated, no
    /// `work_unit` column, or columns unlike those of most shards beside them.
    pub damaged: Vec<(PathBuf, String)>,
}

/// Reads every shard in `dir` once, whole (so a damaged page is found now, not
/// when a figure is drawn), and sorts the files into usable and damaged.
pub fn scan_shards(dir: &Path) -> Result<ShardScan> {
    let mut scan = ShardScan::default();
    let mut readable: Vec<(PathBuf, Vec<String>, Vec<String>)> = Vec::new();
    for path in parquet_files(dir)? {
        let df = match read_parquet(&path) {
            Ok(df) => df,
            Err(e) => {
                scan.damaged.push((path, format!("{e:#}")));
                continue;
            }
        };
        let units = match df.column("work_unit").and_then(|c| c.str().cloned()) {
            Ok(u) => u,
            Err(_) => {
                scan.damaged
                    .push((path, "it has no text column `work_unit`".to_string()));
                continue;
            }
        };
        let mut ids: Vec<String> = units.iter().flatten().map(str::to_string).collect();
        ids.sort();
        ids.dedup();
        let columns = df
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        readable.push((path, columns, ids));
    }
    // Shards of one experiment share their columns; one that lacks some of them,
    // when most agree, was damaged or written by something else.
    let mut counts: HashMap<&Vec<String>, usize> = HashMap::new();
    for (_, columns, _) in &readable {
        *counts.entry(columns).or_default() += 1;
    }
    let majority = counts
        .iter()
        .find(|(_, n)| 2 * **n > readable.len())
        .map(|(c, _)| (*c).clone());
    for (path, columns, ids) in readable {
        if let Some(expected) = &majority
            && &columns != expected
        {
            let missing: Vec<&str> = expected
                .iter()
                .filter(|c| !columns.contains(c))
                .map(String::as_str)
                .collect();
            scan.damaged.push((
                path,
                format!(
                    "its columns differ from the other shards' (missing: {})",
                    if missing.is_empty() {
                        "none, but others are added".to_string()
                    } else {
                        missing.join(", ")
                    }
                ),
            ));
            continue;
        }
        for id in ids {
            scan.units.entry(id).or_default().push(path.clone());
        }
    }
    Ok(scan)
}

/// The `work_unit` ids held by the Parquet shards in `dir`, with the file each
/// came from; a shard that cannot be read is an error naming it.
pub fn units_in(dir: &Path) -> Result<HashMap<String, Vec<PathBuf>>> {
    let scan = scan_shards(dir)?;
    if let Some((path, why)) = scan.damaged.first() {
        bail!(
            "results shard {} is damaged ({why}): move it out of {} and rerun `initlab run` to recompute its units",
            path.display(),
            dir.display()
        );
    }
    Ok(scan.units)
}

/// Concatenates every shard in `dir` into one table (columns unioned by name).
pub fn read_all(dir: &Path) -> Result<DataFrame> {
    let files = parquet_files(dir)?;
    if files.is_empty() {
        bail!("no Parquet results under {}", dir.display());
    }
    let mut frames = Vec::with_capacity(files.len());
    for f in &files {
        frames.push(read_parquet(f)?);
    }
    let mut all = frames.remove(0);
    for f in frames {
        all.vstack_mut_owned(f)
            .context("shards with different columns")?;
    }
    all.rechunk_mut();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_roundtrip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Table::new();
        t.push(vec![
            ("work_unit", "a".into()),
            ("layer", 0usize.into()),
            ("x", 1.5.into()),
            ("ok", true.into()),
        ]);
        t.push(vec![
            ("work_unit", "b".into()),
            ("layer", 1usize.into()),
            ("x", Cell::NullFloat),
            ("ok", false.into()),
        ]);
        let mut df = t.to_dataframe().unwrap();
        let path = dir.path().join("r.parquet");
        write_parquet(
            &path,
            &mut df,
            &BTreeMap::from([("initlab".into(), "test".into())]),
        )
        .unwrap();
        let back = read_parquet(&path).unwrap();
        assert_eq!(back.height(), 2);
        assert_eq!(back.column("layer").unwrap().i64().unwrap().get(1), Some(1));
        assert_eq!(back.column("x").unwrap().f64().unwrap().get(1), None);
        let units = units_in(dir.path()).unwrap();
        assert_eq!(units.len(), 2);
        // no temporary file remains
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let r = write_atomic(&path, |_| anyhow::bail!("boom"));
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
