//! The IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed): a magic
//! number 0x0000_08NN (unsigned bytes, NN dimensions), NN big-endian u32 sizes,
//! then the bytes. Every way a file can be broken gets its own message.

use super::DataError;
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::Path;

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads a file, transparently un-gzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::Io(path.to_path_buf(), e.to_string()))?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::with_capacity(raw.len() * 4);
        MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                DataError::Corrupt(path.to_path_buf(), format!("not a valid gzip file ({e})"))
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses IDX bytes, expecting `ndims` dimensions of unsigned bytes.
pub fn parse(bytes: &[u8], ndims: usize, path: &Path) -> Result<IdxArray, DataError> {
    let corrupt = |msg: String| DataError::Corrupt(path.to_path_buf(), msg);
    if bytes.len() < 4 {
        return Err(corrupt(format!(
            "too short for an IDX header ({} bytes)",
            bytes.len()
        )));
    }
    let expected_magic = 0x0000_0800u32 | ndims as u32;
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != expected_magic {
        return Err(corrupt(format!(
            "wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} (an IDX file of unsigned bytes with {ndims} dimension{}): is it the right file, or an HTML error page saved under its name?",
            if ndims == 1 { "" } else { "s" }
        )));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(corrupt(format!(
            "truncated header: {} bytes, expected {header}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let len: usize = dims.iter().product();
    let body = &bytes[header..];
    if body.len() < len {
        return Err(corrupt(format!(
            "truncated: the header promises {len} bytes of data ({dims:?}), the file has {}",
            body.len()
        )));
    }
    if body.len() > len {
        return Err(corrupt(format!(
            "{} unexpected trailing bytes after the {len} bytes of data the header promises",
            body.len() - len
        )));
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
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
    let img = parse(&read_maybe_gz(images)?, 3, images)?;
    let lab = parse(&read_maybe_gz(labels)?, 1, labels)?;
    if img.dims[0] != lab.dims[0] {
        return Err(DataError::Mismatch(format!(
            "{} holds {} images but {} holds {} labels",
            images.display(),
            img.dims[0],
            labels.display(),
            lab.dims[0]
        )));
    }
    if let Some(bad) = lab.data.iter().find(|&&l| l as usize >= classes) {
        return Err(DataError::Corrupt(
            labels.to_path_buf(),
            format!("label {bad} is out of range (there are {classes} classes)"),
        ));
    }
    Ok((img, lab.data))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
