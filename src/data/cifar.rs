//! CIFAR-10's binary version: records of one label byte and 3072 pixel bytes
//! (1024 red, 1024 green, 1024 blue, each row-major 32×32), 10,000 per file, in
//! `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`, found in a folder
//! or read straight out of `cifar-10-binary.tar.gz`.

use super::DataError;
use flate2::read::GzDecoder;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const RECORD: usize = 1 + 3072;
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
pub const TEST_FILE: &str = "test_batch.bin";
pub const ARCHIVE: &str = "cifar-10-binary.tar.gz";

/// Pixels `[N, 3072]` (channel-major) and labels of one split.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

/// Splits the records of one batch file into pixels and labels, appending to `split`.
pub fn parse_batch(bytes: &[u8], origin: &Path, split: &mut Split) -> Result<(), DataError> {
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(DataError::Corrupt(
            origin.to_path_buf(),
            format!(
                "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated or not a CIFAR-10 binary batch)",
                bytes.len()
            ),
        ));
    }
    for record in bytes.chunks_exact(RECORD) {
        if record[0] >= 10 {
            return Err(DataError::Corrupt(
                origin.to_path_buf(),
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

/// Reads (train, test) from a folder or an archive, and the files read.
pub fn load(location: &Location) -> Result<(Split, Split, Vec<PathBuf>), DataError> {
    let mut train = Split::default();
    let mut test = Split::default();
    match location {
        Location::Folder(dir) => {
            let mut files = Vec::new();
            let missing: Vec<&str> = TRAIN_FILES
                .iter()
                .chain(std::iter::once(&TEST_FILE))
                .copied()
                .filter(|f| !dir.join(f).exists())
                .collect();
            if !missing.is_empty() {
                return Err(DataError::Missing(format!(
                    "CIFAR-10 in {} lacks {}",
                    dir.display(),
                    missing.join(", ")
                )));
            }
            for f in TRAIN_FILES {
                let path = dir.join(f);
                let bytes =
                    std::fs::read(&path).map_err(|e| DataError::Io(path.clone(), e.to_string()))?;
                parse_batch(&bytes, &path, &mut train)?;
                files.push(path);
            }
            let path = dir.join(TEST_FILE);
            let bytes =
                std::fs::read(&path).map_err(|e| DataError::Io(path.clone(), e.to_string()))?;
            parse_batch(&bytes, &path, &mut test)?;
            files.push(path);
            Ok((train, test, files))
        }
        Location::Archive(path) => {
            let members = read_archive(path)?;
            let missing: Vec<&str> = TRAIN_FILES
                .iter()
                .chain(std::iter::once(&TEST_FILE))
                .copied()
                .filter(|f| !members.contains_key(*f))
                .collect();
            if !missing.is_empty() {
                return Err(DataError::Corrupt(
                    path.clone(),
                    format!(
                        "the archive lacks the members {} (is it the binary version, cifar-10-binary.tar.gz?)",
                        missing.join(", ")
                    ),
                ));
            }
            for f in TRAIN_FILES {
                parse_batch(&members[f], &path.join(f), &mut train)?;
            }
            parse_batch(&members[TEST_FILE], &path.join(TEST_FILE), &mut test)?;
            Ok((train, test, vec![path.clone()]))
        }
    }
}

/// The `.bin` members of a `.tar.gz`, by file name.
fn read_archive(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, DataError> {
    let file =
        std::fs::File::open(path).map_err(|e| DataError::Io(path.to_path_buf(), e.to_string()))?;
    let mut archive = tar::Archive::new(GzDecoder::new(std::io::BufReader::with_capacity(
        1 << 20,
        file,
    )));
    let corrupt = |e: std::io::Error| {
        DataError::Corrupt(
            path.to_path_buf(),
            format!("not a readable .tar.gz archive ({e})"),
        )
    };
    let mut out = BTreeMap::new();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = entry
            .path()
            .map_err(corrupt)?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".bin") {
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(corrupt)?;
            out.insert(name, bytes);
        }
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
}
