//! The IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed): a magic
//! number 0x0000_08NN (unsigned bytes, NN dimensions), NN big-endian u32 sizes,
//! then the bytes. Files are read as a stream that never goes past what the header
//! declares, so a damaged file or a gzip bomb costs no more memory than an honest
//! one; every way a file can be broken gets its own message.

use super::DataError;
use flate2::read::MultiGzDecoder;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// What to do about a broken IDX file, appended to every message about one.
pub const FIX: &str = "To fix: replace it with an intact copy (`initlab data fetch mnist` or `initlab data fetch fashion-mnist` downloads the canonical files and verifies their checksums, replacing any that differ)";

/// At most this much is reserved ahead for a gzip file's data; beyond it the buffer
/// grows with what the stream really holds.
const GZ_PREALLOC_MAX: usize = 64 << 20;

/// Deflate's largest expansion (about 1032:1): no more than this many times a gzip
/// file's size is ever reserved, so a header declaring terabytes over a small file
/// reserves nothing large.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// How the bytes of an IDX file arrive, with the file's size on disk.
#[derive(Clone, Copy)]
enum Source {
    Plain(u64),
    Gzip(u64),
}

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of `ndims` dimensions, transparently un-gzipping it when it
/// starts with the gzip magic. A gzip stream is read through a limit of the size its
/// header declares plus one byte, so inflating further is detected, not buffered.
pub fn read(path: &Path, ndims: usize) -> Result<IdxArray, DataError> {
    let io = |e: std::io::Error| DataError::Io(path.to_path_buf(), e.to_string());
    let file = std::fs::File::open(path).map_err(io)?;
    let on_disk = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let is_gzip = reader.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    if is_gzip {
        read_stream(
            MultiGzDecoder::new(reader),
            ndims,
            path,
            Source::Gzip(on_disk),
        )
    } else {
        read_stream(reader, ndims, path, Source::Plain(on_disk))
    }
}

/// Parses IDX bytes already in memory, expecting `ndims` dimensions of unsigned bytes.
pub fn parse(bytes: &[u8], ndims: usize, path: &Path) -> Result<IdxArray, DataError> {
    read_stream(bytes, ndims, path, Source::Plain(bytes.len() as u64))
}

/// Reads into `buf` until it is full or the stream ends; returns the bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The common reader. A plain file's size is checked against the header before its
/// data is read; a gzip stream's is known only by inflating it, through a limit.
fn read_stream(
    mut reader: impl Read,
    ndims: usize,
    path: &Path,
    source: Source,
) -> Result<IdxArray, DataError> {
    let corrupt = |msg: String| DataError::Corrupt(path.to_path_buf(), format!("{msg}. {FIX}"));
    // A read error inside a gzip stream means the compression itself is broken.
    let stream_error = |e: std::io::Error| match source {
        Source::Plain(_) => DataError::Io(path.to_path_buf(), e.to_string()),
        Source::Gzip(_) => corrupt(format!("not a valid gzip file ({e})")),
    };
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut reader, &mut magic).map_err(stream_error)?;
    if got < 4 {
        return Err(corrupt(format!(
            "too short for an IDX header ({got} bytes)"
        )));
    }
    let expected_magic = 0x0000_0800u32 | ndims as u32;
    let magic = u32::from_be_bytes(magic);
    if magic != expected_magic {
        return Err(corrupt(format!(
            "wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} (an IDX file of unsigned bytes with {ndims} dimension{}): is it the right file, or an HTML error page saved under its name?",
            if ndims == 1 { "" } else { "s" }
        )));
    }
    let header = 4 + 4 * ndims;
    let mut sizes = vec![0u8; 4 * ndims];
    let got = read_up_to(&mut reader, &mut sizes).map_err(stream_error)?;
    if got < sizes.len() {
        return Err(corrupt(format!(
            "truncated header: {} bytes, expected {header}",
            4 + got
        )));
    }
    let dims: Vec<usize> = sizes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    // Wrapping arithmetic would turn an absurd header into a small, plausible size.
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            corrupt(format!(
                "the header's dimensions {dims:?} multiply to more bytes than a 64-bit size can hold (overflow): a damaged header"
            ))
        })?;
    match source {
        Source::Plain(file_len) => {
            // The file's length is known: compare before reading a byte of data.
            let body = file_len.saturating_sub(header as u64);
            if body < len as u64 {
                return Err(corrupt(format!(
                    "truncated: the header promises {len} bytes of data ({dims:?}), the file has {body}"
                )));
            }
            if body > len as u64 {
                return Err(corrupt(format!(
                    "{} unexpected trailing bytes after the {len} bytes of data the header promises ({dims:?})",
                    body - len as u64
                )));
            }
            let mut data = vec![0u8; len];
            let got = read_up_to(&mut reader, &mut data).map_err(stream_error)?;
            if got < len {
                return Err(corrupt(format!(
                    "truncated while reading: the header promises {len} bytes of data ({dims:?}), only {got} could be read"
                )));
            }
            Ok(IdxArray { dims, data })
        }
        Source::Gzip(compressed) => {
            let most = compressed.saturating_mul(DEFLATE_MAX_RATIO);
            let reserve = (len as u64).min(most).min(GZ_PREALLOC_MAX as u64);
            let mut data = Vec::with_capacity(reserve as usize);
            // One byte past the declared size is enough to know the stream is too long.
            let limit = (len as u64).saturating_add(1);
            reader
                .take(limit)
                .read_to_end(&mut data)
                .map_err(stream_error)?;
            if data.len() > len {
                return Err(corrupt(format!(
                    "the gzip stream inflates beyond the {len} bytes of data its header declares ({dims:?}); reading stopped there (unexpected trailing data: a damaged file or a gzip bomb)"
                )));
            }
            if data.len() < len {
                return Err(corrupt(format!(
                    "truncated: the header promises {len} bytes of data ({dims:?}), the decompressed file has {}",
                    data.len()
                )));
            }
            Ok(IdxArray { dims, data })
        }
    }
}

/// Serialises an IDX array (used by tests to generate files in the real format).
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&(0x0000_0800u32 | dims.len() as u32).to_be_bytes());
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Images `[N, rows, cols]` and their labels, checked against each other.
pub fn read_split(
    images: &Path,
    labels: &Path,
    classes: usize,
) -> Result<(IdxArray, Vec<u8>), DataError> {
    let img = read(images, 3)?;
    let lab = read(labels, 1)?;
    if img.dims[0] != lab.dims[0] {
        return Err(DataError::Mismatch(format!(
            "{} holds {} images but {} holds {} labels: the two files are not from the same dataset. {FIX}",
            images.display(),
            img.dims[0],
            labels.display(),
            lab.dims[0]
        )));
    }
    if let Some(bad) = lab.data.iter().find(|&&l| l as usize >= classes) {
        return Err(DataError::Corrupt(
            labels.to_path_buf(),
            format!("label {bad} is out of range (there are {classes} classes). {FIX}"),
        ));
    }
    Ok((img, lab.data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn roundtrip_and_errors() {
        let p = Path::new("x");
        let data: Vec<u8> = (0..24).collect();
        let bytes = encode(&[2, 3, 4], &data);
        let a = parse(&bytes, 3, p).unwrap();
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        let err = |b: &[u8], n| parse(b, n, p).unwrap_err().to_string();
        assert!(err(&bytes, 1).contains("wrong magic"));
        assert!(err(&bytes[..bytes.len() - 1], 3).contains("truncated"));
        assert!(err(&bytes[..10], 3).contains("truncated header"));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(err(&longer, 3).contains("trailing"));
        assert!(err(b"<html>", 3).contains("wrong magic"));
        assert!(err(b"ab", 3).contains("too short"));
        // every message says what to do
        assert!(err(&longer, 3).contains("initlab data fetch"));
    }

    #[test]
    fn gzip_files_are_read_up_to_their_header_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..24).collect();
        let good = dir.path().join("good.gz");
        std::fs::write(&good, gzip(&encode(&[2, 3, 4], &data))).unwrap();
        assert_eq!(read(&good, 3).unwrap().data, data);

        let mut long = encode(&[2, 3, 4], &data);
        long.extend(std::iter::repeat_n(0u8, 1 << 20));
        let bomb = dir.path().join("bomb.gz");
        std::fs::write(&bomb, gzip(&long)).unwrap();
        let e = read(&bomb, 3).unwrap_err().to_string();
        assert!(
            e.contains("bomb.gz") && e.contains("inflates beyond the 24 bytes"),
            "{e}"
        );

        let short = dir.path().join("short.gz");
        std::fs::write(&short, gzip(&encode(&[2, 3, 4], &data)[..20])).unwrap();
        let e = read(&short, 3).unwrap_err().to_string();
        assert!(e.contains("short.gz") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn overflowing_dimensions_are_refused_not_wrapped() {
        // 2^22 · 2^21 · 2^21 = 2^64, which wraps to 0 in unchecked arithmetic.
        let bytes = encode(&[1 << 22, 1 << 21, 1 << 21], &[]);
        let e = parse(&bytes, 3, Path::new("x")).unwrap_err().to_string();
        assert!(e.contains("overflow"), "{e}");
    }
}
