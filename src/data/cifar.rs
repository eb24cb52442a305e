//! CIFAR-10's binary version: records of one label byte and 3072 pixel bytes
//! (1024 red, 1024 green, 1024 blue, each row-major 32×32), 10,000 per file, in
//! `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`, found in a folder
//! or read straight out of `cifar-10-binary.tar.gz`. Sizes are checked before
//! anything is read or allocated, so a damaged or hostile file costs no memory.

use super::DataError;
use flate2::read::GzDecoder;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const RECORD: usize = 1 + 3072;
/// Records in one batch file of the canonical dataset.
pub const BATCH_RECORDS: usize = 10_000;
/// Bytes of one canonical batch file: 10,000 records of 3,073 bytes.
pub const BATCH_BYTES: u64 = (BATCH_RECORDS * RECORD) as u64;
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
pub const TEST_FILE: &str = "test_batch.bin";
pub const ARCHIVE: &str = "cifar-10-binary.tar.gz";

/// The canonical archive inflates to six batches plus a few small files and tar
/// headers; reading stops past this, so a tar-level bomb (say, a long-name header
/// with gigabytes of data behind it) is refused with bounded memory.
const ARCHIVE_INFLATED_MAX: u64 = 6 * BATCH_BYTES + (16 << 20);

/// What to do about a broken CIFAR-10 file, appended to every message about one.
pub const FIX: &str = "To fix: replace it with an intact copy (`initlab data fetch cifar10` downloads the canonical archive and verifies its checksums, replacing one that differs)";

fn corrupt(origin: &Path, msg: String) -> DataError {
    DataError::Corrupt(origin.to_path_buf(), format!("{msg}. {FIX}"))
}

/// Pixels `[N, 3072]` (channel-major) and labels of one split.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

/// Checks the size a batch file has (or an archive member declares) before it is
/// read: at most one canonical batch, and a whole number of records.
pub fn check_batch_size(bytes: u64, origin: &Path) -> Result<usize, DataError> {
    if bytes > BATCH_BYTES {
        return Err(corrupt(
            origin,
            format!(
                "{bytes} bytes is more than a CIFAR-10 batch ({BATCH_RECORDS} records of {RECORD} bytes = {BATCH_BYTES} bytes); it was not read"
            ),
        ));
    }
    if bytes == 0 || !bytes.is_multiple_of(RECORD as u64) {
        return Err(corrupt(
            origin,
            format!(
                "{bytes} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated or not a CIFAR-10 binary batch)"
            ),
        ));
    }
    Ok(bytes as usize / RECORD)
}

/// Splits the records of one batch file into pixels and labels, appending to `split`.
pub fn parse_batch(bytes: &[u8], origin: &Path, split: &mut Split) -> Result<(), DataError> {
    check_batch_size(bytes.len() as u64, origin)?;
    for record in bytes.chunks_exact(RECORD) {
        if record[0] >= 10 {
            return Err(corrupt(
                origin,
                format!(
                    "label {} is out of range (CIFAR-10 has 10 classes): not a CIFAR-10 binary batch?",
                    record[0]
                ),
            ));
        }
        split.labels.push(record[0]);
        split.pixels.extend_from_slice(&record[1..]);
    }
    Ok(())
}

/// Every batch of one copy of the dataset holds the same number of records (10,000
/// in the canonical files); one that holds fewer was cut at a record boundary,
/// which no per-file check can see.
fn check_equal_counts(batches: &[(PathBuf, u64)]) -> Result<(), DataError> {
    let Some(most) = batches.iter().map(|(_, b)| *b).max() else {
        return Ok(());
    };
    if let Some((origin, bytes)) = batches.iter().find(|(_, b)| *b < most) {
        return Err(corrupt(
            origin,
            format!(
                "it holds {} records where the other batches hold {}: truncated at a record boundary",
                bytes / RECORD as u64,
                most / RECORD as u64
            ),
        ));
    }
    Ok(())
}

/// Where the CIFAR-10 files are: the folder holding the six batches, or the archive.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Folder(PathBuf),
    Archive(PathBuf),
}

/// Looks for the batches in `dir`, `dir/cifar-10-batches-bin`, or the archive in `dir`.
pub fn locate(dir: &Path) -> Option<Location> {
    for candidate in [dir.to_path_buf(), dir.join("cifar-10-batches-bin")] {
        if candidate.join(TEST_FILE).exists() || candidate.join(TRAIN_FILES[0]).exists() {
            return Some(Location::Folder(candidate));
        }
    }
    let archive = dir.join(ARCHIVE);
    archive.exists().then_some(Location::Archive(archive))
}

/// The six batch names, training batches first.
fn batch_names() -> impl Iterator<Item = &'static str> {
    TRAIN_FILES
        .iter()
        .copied()
        .chain(std::iter::once(TEST_FILE))
}

/// Reads (train, test) from a folder or an archive, and the files read.
pub fn load(location: &Location) -> Result<(Split, Split, Vec<PathBuf>), DataError> {
    match location {
        Location::Folder(dir) => {
            let missing: Vec<&str> = batch_names().filter(|f| !dir.join(f).exists()).collect();
            if !missing.is_empty() {
                return Err(DataError::Missing(format!(
                    "CIFAR-10 in {} lacks {}. To fix: copy the missing batches there, or get the archive with `initlab data fetch cifar10`",
                    dir.display(),
                    missing.join(", ")
                )));
            }
            // Every size is checked from the file system before any file is read.
            let mut sizes = Vec::new();
            for f in batch_names() {
                let path = dir.join(f);
                let bytes = std::fs::metadata(&path)
                    .map_err(|e| DataError::Io(path.clone(), e.to_string()))?
                    .len();
                check_batch_size(bytes, &path)?;
                sizes.push((path, bytes));
            }
            check_equal_counts(&sizes)?;
            let mut batches = Vec::new();
            for (path, bytes) in &sizes {
                batches.push(read_file(path, *bytes)?);
            }
            let (train, test) = split_batches(&sizes, &batches)?;
            Ok((train, test, sizes.into_iter().map(|(p, _)| p).collect()))
        }
        Location::Archive(path) => {
            let mut members = read_archive(path)?;
            let missing: Vec<&str> = batch_names()
                .filter(|f| !members.contains_key(*f))
                .collect();
            if !missing.is_empty() {
                return Err(corrupt(
                    path,
                    format!(
                        "the archive lacks the members {} (is it the binary version, cifar-10-binary.tar.gz?)",
                        missing.join(", ")
                    ),
                ));
            }
            let mut sizes = Vec::new();
            let mut batches = Vec::new();
            for f in batch_names() {
                let bytes = members.remove(f).unwrap_or_default();
                sizes.push((path.join(f), bytes.len() as u64));
                batches.push(bytes);
            }
            check_equal_counts(&sizes)?;
            let (train, test) = split_batches(&sizes, &batches)?;
            Ok((train, test, vec![path.clone()]))
        }
    }
}

/// Parses the six batches (in `batch_names` order) into the two splits.
fn split_batches(
    sizes: &[(PathBuf, u64)],
    batches: &[Vec<u8>],
) -> Result<(Split, Split), DataError> {
    let mut train = Split::default();
    let mut test = Split::default();
    for (i, ((origin, _), bytes)) in sizes.iter().zip(batches).enumerate() {
        let split = if i < TRAIN_FILES.len() {
            &mut train
        } else {
            &mut test
        };
        parse_batch(bytes, origin, split)?;
    }
    Ok((train, test))
}

/// Reads a batch file whose size was checked, never more than that size.
fn read_file(path: &Path, bytes: u64) -> Result<Vec<u8>, DataError> {
    let io = |e: std::io::Error| DataError::Io(path.to_path_buf(), e.to_string());
    let file = std::fs::File::open(path).map_err(io)?;
    let mut out = Vec::with_capacity(bytes as usize);
    // One byte more than expected shows a file that grew since it was measured.
    file.take(bytes + 1).read_to_end(&mut out).map_err(io)?;
    if out.len() as u64 != bytes {
        return Err(DataError::Io(
            path.to_path_buf(),
            format!(
                "it changed while being read ({bytes} bytes expected, {} read); is another program writing it?",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// A reader that fails, with a message saying why, once more than `left` bytes
/// have been asked of it (where `Read::take` would look like a clean end).
struct Bounded<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(format!(
                    "the archive inflates beyond {} bytes, more than CIFAR-10's six batches and their companions; reading stopped there",
                    self.limit
                ))),
            };
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// The six batch members of a `.tar.gz`, by file name. Each member's declared size
/// is checked before it is read, a batch that appears twice is refused, and other
/// members are skipped without being kept.
fn read_archive(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, DataError> {
    let file =
        std::fs::File::open(path).map_err(|e| DataError::Io(path.to_path_buf(), e.to_string()))?;
    let inflated = Bounded {
        inner: GzDecoder::new(std::io::BufReader::with_capacity(1 << 20, file)),
        left: ARCHIVE_INFLATED_MAX,
        limit: ARCHIVE_INFLATED_MAX,
    };
    let mut archive = tar::Archive::new(inflated);
    let unreadable =
        |e: std::io::Error| corrupt(path, format!("not a readable .tar.gz archive ({e})"));
    let mut out = BTreeMap::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for entry in archive.entries().map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let member = entry.path().map_err(unreadable)?.into_owned();
        let name = member
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = entry.size();
        // The canonical archive holds nothing larger than one batch.
        if size > BATCH_BYTES {
            return Err(corrupt(
                path,
                format!(
                    "its member {} declares {size} bytes, more than a CIFAR-10 batch ({BATCH_BYTES} bytes); it was not read",
                    member.display()
                ),
            ));
        }
        if !batch_names().any(|b| b == name) {
            continue;
        }
        if let Some(first) = seen.get(&name) {
            return Err(corrupt(
                path,
                format!(
                    "it holds {name} twice ({first} and {}); a genuine archive holds each batch once, so which one is meant cannot be known",
                    member.display()
                ),
            ));
        }
        let origin = path.join(&name);
        check_batch_size(size, &origin)?;
        let mut bytes = Vec::with_capacity(size as usize);
        entry
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        if bytes.len() as u64 != size {
            return Err(corrupt(
                &origin,
                format!(
                    "the archive ends inside it ({} of {size} bytes): truncated download",
                    bytes.len()
                ),
            ));
        }
        seen.insert(name.clone(), member.display().to_string());
        out.insert(name, bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_into_labels_and_pixels() {
        let mut bytes = vec![3u8];
        bytes.extend((0..3072).map(|i| (i % 251) as u8));
        bytes.push(9);
        bytes.extend(std::iter::repeat_n(7u8, 3072));
        let mut s = Split::default();
        parse_batch(&bytes, Path::new("b"), &mut s).unwrap();
        assert_eq!(s.labels, vec![3, 9]);
        assert_eq!(s.pixels.len(), 2 * 3072);
        assert_eq!(s.pixels[3072], 7);
        assert!(parse_batch(&bytes[..100], Path::new("b"), &mut s).is_err());
        let mut bad = bytes.clone();
        bad[0] = 12;
        assert!(
            parse_batch(&bad, Path::new("b"), &mut Split::default())
                .unwrap_err()
                .to_string()
                .contains("label 12")
        );
    }

    #[test]
    fn batch_sizes_are_checked_against_the_canonical_batch() {
        let o = Path::new("b");
        assert_eq!(check_batch_size(BATCH_BYTES, o).unwrap(), BATCH_RECORDS);
        assert_eq!(BATCH_BYTES, 30_730_000);
        let e = check_batch_size(BATCH_BYTES + RECORD as u64, o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than a CIFAR-10 batch"), "{e}");
        assert!(check_batch_size(u64::MAX, o).is_err());
        assert!(check_batch_size(0, o).is_err());
        let short = vec![
            (PathBuf::from("a"), BATCH_BYTES),
            (PathBuf::from("b"), BATCH_BYTES - RECORD as u64),
        ];
        let e = check_equal_counts(&short).unwrap_err().to_string();
        assert!(
            e.contains("9999 records where the other batches hold 10000"),
            "{e}"
        );
    }

    #[test]
    fn a_bounded_reader_fails_past_its_limit() {
        let data = [1u8; 100];
        let mut r = Bounded {
            inner: &data[..],
            left: 99,
            limit: 99,
        };
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err().to_string();
        assert!(e.contains("inflates beyond 99 bytes"), "{e}");
        let mut exact = Bounded {
            inner: &data[..],
            left: 100,
            limit: 100,
        };
        out.clear();
        assert_eq!(exact.read_to_end(&mut out).unwrap(), 100);
    }
}
