//! `initlab data fetch`: downloads a dataset's standard files from their canonical
//! public location (or a mirror) into the data directory, verifying the published
//! MD5 checksums. A download goes to a temporary name and is renamed only once
//! verified, so nothing broken is ever left where a loader would find it.

use super::{DatasetName, cifar, locate::IDX_FILES};
use anyhow::{Context, Result, bail};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A file to download and its published MD5.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub file: String,
    pub md5: String,
}

/// The canonical base URLs (tried in order) and files of a dataset.
pub fn sources(name: DatasetName) -> Result<(Vec<&'static str>, Vec<Resource>)> {
    let r = |file: &str, md5: &str| Resource {
        file: file.into(),
        md5: md5.into(),
    };
    Ok(match name {
        DatasetName::Mnist => (
            vec![
                "https://yann.lecun.com/exdb/mnist/",
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
            ],
            vec![
                r(
                    "train-images-idx3-ubyte.gz",
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                ),
                r(
                    "train-labels-idx1-ubyte.gz",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                ),
                r(
                    "t10k-images-idx3-ubyte.gz",
                    "9fb629c4189551a2d022fa330f9573f3",
                ),
                r(
                    "t10k-labels-idx1-ubyte.gz",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
            ],
        ),
        DatasetName::FashionMnist => (
            vec!["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
            vec![
                r(
                    "train-images-idx3-ubyte.gz",
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                ),
                r(
                    "train-labels-idx1-ubyte.gz",
                    "25c81989df183df01b3e8a0aad5dffbe",
                ),
                r(
                    "t10k-images-idx3-ubyte.gz",
                    "bef4ecab320f06d8554ea6380940ec79",
                ),
                r(
                    "t10k-labels-idx1-ubyte.gz",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            ],
        ),
        DatasetName::Cifar10 => (
            vec!["https://www.cs.toronto.edu/~kriz/"],
            vec![r(cifar::ARCHIVE, "c32a1d4ab5d03f1284b67883e8d87530")],
        ),
        DatasetName::Synthetic(_) => {
            bail!("the synthetic datasets are generated, not downloaded: nothing to fetch")
        }
    })
}

/// Reads an `md5sum`-style file ("<hash>  <file>" per line) of expected checksums.
pub fn read_checksums(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read checksum file {}", path.display()))?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some(hash), Some(file))
                if hash.len() == 32 && hash.chars().all(|c| c.is_ascii_hexdigit()) =>
            {
                out.insert(
                    file.trim_start_matches('*').to_string(),
                    hash.to_ascii_lowercase(),
                );
            }
            _ => bail!(
                "{} line {}: expected `<md5>  <file>`",
                path.display(),
                i + 1
            ),
        }
    }
    Ok(out)
}

pub struct FetchOptions {
    /// Base URL to use instead of the canonical ones (file names are appended).
    pub mirror: Option<String>,
    /// Expected checksums replacing the published ones (for a mirror of other files).
    pub checksums: Option<BTreeMap<String, String>>,
    /// Download again even if the files are already there and verified.
    pub force: bool,
}

/// Downloads `name` into `data_dir/<folder>`, returning the files written.
pub fn fetch(name: DatasetName, data_dir: &Path, opts: &FetchOptions) -> Result<Vec<PathBuf>> {
    let (bases, mut resources) = sources(name)?;
    if let Some(sums) = &opts.checksums {
        for r in &mut resources {
            match sums.get(&r.file) {
                Some(h) => r.md5 = h.clone(),
                None => bail!("the checksum file has no entry for {}", r.file),
            }
        }
    }
    let bases: Vec<String> = match &opts.mirror {
        Some(m) => vec![if m.ends_with('/') {
            m.clone()
        } else {
            format!("{m}/")
        }],
        None => bases.iter().map(|b| b.to_string()).collect(),
    };
    let dir = data_dir.join(name.folder());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for r in &resources {
        let target = dir.join(&r.file);
        if target.exists() && !opts.force {
            if md5_file(&target)? == r.md5 {
                eprintln!("{}: already present and verified", target.display());
                written.push(target);
                continue;
            }
            eprintln!(
                "{}: present but its checksum differs; downloading again",
                target.display()
            );
        }
        let mut errors = Vec::new();
        let mut done = false;
        for base in &bases {
            let url = format!("{base}{}", r.file);
            match download_verified(&url, &target, &r.md5) {
                Ok(()) => {
                    done = true;
                    break;
                }
                Err(e) => errors.push(format!("{url}: {e:#}")),
            }
        }
        if !done {
            bail!(
                "could not fetch {} for {name}:\n  {}\nUse --mirror URL for another source, or copy the files into {} by hand{}",
                r.file,
                errors.join("\n  "),
                dir.display(),
                if name == DatasetName::FashionMnist {
                    " (or apt-get install dataset-fashion-mnist)"
                } else {
                    ""
                }
            );
        }
        written.push(target);
    }
    // A fetched IDX dataset is also checked to load, so a bad mirror is caught here.
    if matches!(name, DatasetName::Mnist | DatasetName::FashionMnist) {
        for f in IDX_FILES {
            let p = super::locate::idx_path(&dir, f).expect("just written");
            let ndims = if f.contains("labels") { 1 } else { 3 };
            super::idx::parse(&super::idx::read_maybe_gz(&p)?, ndims, &p)?;
        }
    }
    Ok(written)
}

fn download_verified(url: &str, target: &Path, md5: &str) -> Result<()> {
    let tmp = target.with_file_name(format!(
        ".{}.part",
        target.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = (|| -> Result<()> {
        let mut response = ureq::get(url).call().context("request failed")?;
        let total = response.body().content_length();
        let mut reader = response.body_mut().as_reader();
        let mut file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let bar = crate::progress::bytes_bar(total, &format!("fetching {url}"));
        let mut hasher = Md5::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).context("download interrupted")?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])?;
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        file.sync_all()?;
        let got = super::hex(&hasher.finalize());
        if got != md5 {
            bail!(
                "checksum mismatch: MD5 {got}, expected {md5} (a corrupt download or a different file)"
            );
        }
        std::fs::rename(&tmp, target)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub fn md5_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(super::hex(&hasher.finalize()))
}
