//! `initlab data fetch`: downloads a dataset's standard files from their canonical
//! public location (or a mirror) into the data directory, verifying the published
//! MD5 checksums and the SHA-256 pins kept here (MD5 alone no longer resists a
//! forged file). A response is never read past the size the file can have, a
//! download that starts over HTTPS never continues over plain HTTP, and files go to
//! temporary names renamed only once all of them are verified (and, for IDX
//! datasets, load), so nothing broken is ever left where a loader would find it.

use super::{DatasetName, cifar, locate::IDX_FILES};
use anyhow::{Context, Result, anyhow, bail};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The largest canonical file, `cifar-10-binary.tar.gz`, in bytes.
pub const LARGEST_CANONICAL_BYTES: u64 = 170_052_171;

/// The most any response may hold when the file's canonical size does not apply
/// (a mirror with its own checksums): the largest canonical file plus 32 MiB.
pub const MAX_DOWNLOAD_BYTES: u64 = LARGEST_CANONICAL_BYTES + (32 << 20);

/// A file to download and what it must be: its published MD5, the SHA-256 pinned
/// here, and its exact size (all `None` that a `--checksums` file does not give).
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub file: String,
    pub md5: Option<String>,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
}

impl Resource {
    /// The most bytes a response for this file may hold.
    pub fn max_bytes(&self) -> u64 {
        self.bytes.unwrap_or(MAX_DOWNLOAD_BYTES)
    }
}

/// Expected digests of one file, as a `--checksums` file gives them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Digests {
    pub md5: Option<String>,
    pub sha256: Option<String>,
}

/// The canonical base URLs (tried in order) and files of a dataset. MD5s are the
/// ones the datasets' authors publish; SHA-256s and sizes are those TensorFlow
/// Datasets records for the same URLs (`url_checksums/*.txt`), each cross-checked
/// against another project that pins them.
pub fn sources(name: DatasetName) -> Result<(Vec<&'static str>, Vec<Resource>)> {
    let r = |file: &str, md5: &str, sha256: &str, bytes: u64| Resource {
        file: file.into(),
        md5: Some(md5.into()),
        sha256: Some(sha256.into()),
        bytes: Some(bytes),
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
                    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                    9_912_422,
                ),
                r(
                    "train-labels-idx1-ubyte.gz",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                    28_881,
                ),
                r(
                    "t10k-images-idx3-ubyte.gz",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                    1_648_877,
                ),
                r(
                    "t10k-labels-idx1-ubyte.gz",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                    4_542,
                ),
            ],
        ),
        DatasetName::FashionMnist => (
            vec!["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
            vec![
                r(
                    "train-images-idx3-ubyte.gz",
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                    26_421_880,
                ),
                r(
                    "train-labels-idx1-ubyte.gz",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                    29_515,
                ),
                r(
                    "t10k-images-idx3-ubyte.gz",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                    4_422_102,
                ),
                r(
                    "t10k-labels-idx1-ubyte.gz",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                    "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                    5_148,
                ),
            ],
        ),
        DatasetName::Cifar10 => (
            vec!["https://www.cs.toronto.edu/~kriz/"],
            vec![r(
                cifar::ARCHIVE,
                "c32a1d4ab5d03f1284b67883e8d87530",
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                LARGEST_CANONICAL_BYTES,
            )],
        ),
        DatasetName::Synthetic(_) => {
            bail!("the synthetic datasets are generated, not downloaded: nothing to fetch")
        }
    })
}

/// Reads a file of expected checksums, one "<hash>  <file>" per line as `md5sum`
/// and `sha256sum` write them (32 hex digits: MD5; 64: SHA-256); a file may have one
/// line of each.
pub fn read_checksums(path: &Path) -> Result<BTreeMap<String, Digests>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read checksum file {}", path.display()))?;
    let mut out: BTreeMap<String, Digests> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(hash), Some(file)) = (parts.next(), parts.next()) else {
            bail!(
                "{} line {}: expected `<md5 or sha256>  <file>` (as md5sum or sha256sum print them)",
                path.display(),
                i + 1
            );
        };
        let hash = hash.to_ascii_lowercase();
        let file = file.trim_start_matches('*').to_string();
        let digests = out.entry(file.clone()).or_default();
        let slot = match hash.len() {
            32 if is_hex(&hash) => &mut digests.md5,
            64 if is_hex(&hash) => &mut digests.sha256,
            _ => bail!(
                "{} line {}: `{hash}` is neither an MD5 (32 hex digits) nor a SHA-256 (64); expected `<md5 or sha256>  <file>`",
                path.display(),
                i + 1
            ),
        };
        if slot.as_ref().is_some_and(|h| *h != hash) {
            bail!(
                "{} line {}: a second, different checksum of the same kind for {file}; keep one",
                path.display(),
                i + 1
            );
        }
        *slot = Some(hash);
    }
    Ok(out)
}

fn is_hex(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_hexdigit())
}

pub struct FetchOptions {
    /// Base URL to use instead of the canonical ones (file names are appended).
    pub mirror: Option<String>,
    /// Expected checksums replacing the published ones and the pins (for a mirror
    /// of other files): whoever gives them vouches for those files instead.
    pub checksums: Option<BTreeMap<String, Digests>>,
    /// Download again even if the files are already there and verified.
    pub force: bool,
}

/// Downloads `name` into `data_dir/<folder>`, returning the files written.
pub fn fetch(name: DatasetName, data_dir: &Path, opts: &FetchOptions) -> Result<Vec<PathBuf>> {
    let (bases, mut resources) = sources(name)?;
    if let Some(sums) = &opts.checksums {
        use_given_checksums(&mut resources, sums)?;
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
    let mut staged: Vec<Staged> = Vec::new();
    for r in &resources {
        match stage(name, &dir, r, &bases, opts.force) {
            Ok(s) => staged.push(s),
            Err(e) => {
                discard(&staged);
                return Err(e);
            }
        }
    }
    // A fetched IDX dataset is also checked to load before anything is put in
    // place, so a bad mirror is caught here and leaves nothing behind.
    if let Err(e) = check_idx_loads(name, &staged) {
        discard(&staged);
        return Err(e);
    }
    install(&staged)
}

/// A file of a dataset ready to be put in place: its final path, and the
/// verified temporary file if it was downloaded now.
type Staged = (PathBuf, Option<PathBuf>);

/// Removes the temporary files of `staged`, leaving nothing behind.
fn discard(staged: &[Staged]) {
    for tmp in staged.iter().filter_map(|(_, t)| t.as_ref()) {
        let _ = std::fs::remove_file(tmp);
    }
}

/// Replaces the expected checksums of `resources` with those of the user's
/// checksum file, warning where it gives only an MD5.
fn use_given_checksums(resources: &mut [Resource], sums: &BTreeMap<String, Digests>) -> Result<()> {
    for r in resources {
        let Some(d) = sums.get(&r.file) else {
            bail!(
                "the checksum file has no entry for {}; add its MD5 or SHA-256",
                r.file
            );
        };
        if d.sha256.is_none() {
            eprintln!(
                "warning: the checksum file gives only an MD5 for {}, which does not resist a forged file; add its SHA-256 (as sha256sum prints it)",
                r.file
            );
        }
        r.md5 = d.md5.clone();
        r.sha256 = d.sha256.clone();
        // Files other than the canonical ones may have any size, up to the bound.
        r.bytes = None;
    }
    Ok(())
}

/// Makes one file of `name` ready in `dir`: kept if already present and
/// verified (unless `force`), otherwise downloaded and verified from the first
/// of `bases` that serves it, into a temporary file.
fn stage(
    name: DatasetName,
    dir: &Path,
    r: &Resource,
    bases: &[String],
    force: bool,
) -> Result<Staged> {
    let target = dir.join(&r.file);
    if target.exists() && !force {
        match verify_file(&target, r) {
            Ok(()) => {
                eprintln!("{}: already present and verified", target.display());
                return Ok((target, None));
            }
            Err(why) => eprintln!(
                "{}: present but {why:#}; downloading again",
                target.display()
            ),
        }
    }
    let tmp = dir.join(format!(".{}.{}.part", r.file, std::process::id()));
    let mut errors = Vec::new();
    for base in bases {
        let url = format!("{base}{}", r.file);
        match download_verified(&url, &tmp, r) {
            Ok(()) => return Ok((target, Some(tmp))),
            Err(e) => errors.push(format!("{url}: {e:#}")),
        }
    }
    bail!(
        "could not fetch {} for {name}:\n  {}\nNothing was written. To fix: try again later, use --mirror URL for another source (--checksums FILE if its files differ from the canonical ones), or copy the files into {} by hand{}",
        r.file,
        errors.join("\n  "),
        dir.display(),
        if name == DatasetName::FashionMnist {
            " (or apt-get install dataset-fashion-mnist)"
        } else {
            ""
        }
    )
}

/// Checks that the staged files of an IDX dataset (MNIST, Fashion-MNIST) load,
/// so that files matching a mirror's checksums but not the format are refused.
fn check_idx_loads(name: DatasetName, staged: &[Staged]) -> Result<()> {
    if !matches!(name, DatasetName::Mnist | DatasetName::FashionMnist) {
        return Ok(());
    }
    let path_of = |file: &str| {
        staged
            .iter()
            .find(|(target, _)| target.file_name().is_some_and(|f| f == file))
            .map(|(target, tmp)| tmp.clone().unwrap_or_else(|| target.clone()))
    };
    let paths: Vec<PathBuf> = IDX_FILES
        .iter()
        .filter_map(|f| path_of(&format!("{f}.gz")))
        .collect();
    if paths.len() == IDX_FILES.len() {
        let loads = super::idx::read_split(&paths[0], &paths[1], 10)
            .and_then(|_| super::idx::read_split(&paths[2], &paths[3], 10));
        if let Err(e) = loads {
            bail!(
                "the files fetched for {name} match their checksums but do not load: {e}\nNothing was written. To fix: use another --mirror, or checksums of files that are {name} in the IDX format"
            );
        }
    }
    Ok(())
}

/// Moves the staged downloads into place, returning every file of the dataset;
/// on failure removes the downloads not yet moved.
fn install(staged: &[Staged]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (i, (target, tmp)) in staged.iter().enumerate() {
        if let Some(tmp) = tmp
            && let Err(e) = std::fs::rename(tmp, target)
        {
            discard(&staged[i..]);
            return Err(anyhow!(e).context(format!(
                "cannot move the verified download into place as {}",
                target.display()
            )));
        }
        written.push(target.clone());
    }
    Ok(written)
}

/// An agent whose redirects stay on HTTPS when the download starts on HTTPS
/// (ureq checks `https_only` at every hop); a plain-HTTP start (Fashion-MNIST's
/// canonical host, a loopback mirror) may still be redirected anywhere.
pub fn agent_for(url: &str) -> ureq::Agent {
    let starts_secure = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    let config = ureq::Agent::config_builder()
        .https_only(starts_secure)
        .build();
    ureq::Agent::new_with_config(config)
}

/// A request error in words that say what happened and what to do.
pub fn describe_request_error(e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::RequireHttpsOnly(target) => anyhow!(
            "refused a redirect from HTTPS to plain HTTP ({target}): a download that starts over HTTPS never continues unencrypted; use a --mirror that serves the file over HTTPS"
        ),
        other => anyhow!(other).context("request failed"),
    }
}

/// Downloads `url` into `tmp`, reading at most the size the file can have and
/// checking every digest it is expected to have; `tmp` is removed on any failure.
fn download_verified(url: &str, tmp: &Path, r: &Resource) -> Result<()> {
    let limit = r.max_bytes();
    let what = match r.bytes {
        Some(_) => format!("the canonical {} has", r.file),
        None => format!(
            "any file initlab downloads may have (the largest canonical file, {}, has {LARGEST_CANONICAL_BYTES}, plus a margin)",
            cifar::ARCHIVE
        ),
    };
    let result = (|| -> Result<()> {
        let mut response = agent_for(url)
            .get(url)
            .call()
            .map_err(describe_request_error)?;
        let total = response.body().content_length();
        if let Some(n) = total.filter(|&n| n > limit) {
            bail!(
                "the server announces {n} bytes, more than the {limit} bytes {what}; refused without reading it"
            );
        }
        // One byte past the limit is enough to know the response is too long.
        let mut reader = response.body_mut().as_reader().take(limit + 1);
        let mut file = std::fs::File::create(tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let bar = crate::progress::bytes_bar(total, &format!("fetching {url}"));
        let mut md5 = Md5::new();
        let mut sha256 = Sha256::new();
        let mut received = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).context("download interrupted")?;
            if n == 0 {
                break;
            }
            received += n as u64;
            if received > limit {
                bar.finish_and_clear();
                bail!(
                    "the response is longer than the {limit} bytes {what}; reading stopped there"
                );
            }
            md5.update(&buf[..n]);
            sha256.update(&buf[..n]);
            file.write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        file.sync_all()?;
        check_digests(
            r,
            &super::hex(&md5.finalize()),
            &super::hex(&sha256.finalize()),
        )
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Compares a file's digests with those expected of it: one message naming the
/// kind, the expected and the actual digest.
fn check_digests(r: &Resource, md5: &str, sha256: &str) -> Result<()> {
    let source = match r.bytes {
        Some(_) => "published / pinned in initlab's source",
        None => "given in the checksum file",
    };
    if let Some(expected) = r.md5.as_deref().filter(|e| *e != md5) {
        bail!(
            "checksum mismatch for {}: MD5 {md5}, expected {expected} ({source}): a corrupt download or a different file",
            r.file
        );
    }
    if let Some(expected) = r.sha256.as_deref().filter(|e| *e != sha256) {
        bail!(
            "checksum mismatch for {}: SHA-256 {sha256}, expected {expected} ({source}){}: a corrupt download or a tampered file",
            r.file,
            if r.md5.is_some() {
                " although its MD5 matches"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Whether a file on disk is the one expected (its digests, and its size when known).
pub fn verify_file(path: &Path, r: &Resource) -> Result<()> {
    let (md5, sha256) = file_digests(path)?;
    check_digests(r, &md5, &sha256)
}

/// MD5 and SHA-256 of a file, in one pass.
pub fn file_digests(path: &Path) -> Result<(String, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut md5 = Md5::new();
    let mut sha256 = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        sha256.update(&buf[..n]);
    }
    Ok((super::hex(&md5.finalize()), super::hex(&sha256.finalize())))
}

pub fn md5_file(path: &Path) -> Result<String> {
    Ok(file_digests(path)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_canonical_file_has_a_pin_and_a_size() {
        for name in [
            DatasetName::Mnist,
            DatasetName::FashionMnist,
            DatasetName::Cifar10,
        ] {
            for r in sources(name).unwrap().1 {
                let md5 = r.md5.as_deref().unwrap_or_default();
                let sha = r.sha256.as_deref().unwrap_or_default();
                assert!(md5.len() == 32 && is_hex(md5), "{name} {}", r.file);
                assert!(sha.len() == 64 && is_hex(sha), "{name} {}", r.file);
                let bytes = r.bytes.unwrap_or(u64::MAX);
                assert!(bytes <= LARGEST_CANONICAL_BYTES, "{name} {}", r.file);
                assert_eq!(r.max_bytes(), bytes);
            }
        }
        const { assert!(MAX_DOWNLOAD_BYTES > LARGEST_CANONICAL_BYTES) };
    }

    #[test]
    fn redirects_from_https_to_plain_http_are_refused() {
        // An agent for an HTTPS download refuses any plain-HTTP hop, which is what a
        // downgrading redirect is; the refusal happens before a connection is made.
        let secure = agent_for("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz");
        assert!(secure.config().https_only());
        let e = secure
            .get("http://127.0.0.1:9/cifar-10-binary.tar.gz")
            .call()
            .unwrap_err();
        assert!(matches!(e, ureq::Error::RequireHttpsOnly(_)), "{e}");
        let message = describe_request_error(e).to_string();
        assert!(
            message.contains("refused a redirect from HTTPS to plain HTTP")
                && message.contains("127.0.0.1:9"),
            "{message}"
        );
        // A plain-HTTP start (Fashion-MNIST's host, loopback mirrors) is still allowed.
        assert!(
            !agent_for("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
                .config()
                .https_only()
        );
        assert!(agent_for("HTTPS://example.org/").config().https_only());
    }

    #[test]
    fn checksum_files_give_md5_and_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("SUMS");
        let md5 = "0123456789abcdef0123456789abcdef";
        let sha = "ab".repeat(32);
        std::fs::write(
            &p,
            format!("{md5}  a.gz\n{sha} *a.gz\n# note\n\n{md5}  b.gz\n"),
        )
        .unwrap();
        let sums = read_checksums(&p).unwrap();
        assert_eq!(sums["a.gz"].md5.as_deref(), Some(md5));
        assert_eq!(sums["a.gz"].sha256.as_deref(), Some(sha.as_str()));
        assert_eq!(sums["b.gz"].sha256, None);
        std::fs::write(&p, "abc  a.gz\n").unwrap();
        assert!(
            read_checksums(&p)
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
        std::fs::write(&p, format!("{md5}  a.gz\n{}  a.gz\n", "f".repeat(32))).unwrap();
        assert!(
            read_checksums(&p)
                .unwrap_err()
                .to_string()
                .contains("second")
        );
    }

    #[test]
    fn a_sha256_mismatch_is_refused_even_when_the_md5_matches() {
        let r = Resource {
            file: "f.gz".into(),
            md5: Some("m".repeat(32)),
            sha256: Some("a".repeat(64)),
            bytes: Some(10),
        };
        assert!(check_digests(&r, &"m".repeat(32), &"a".repeat(64)).is_ok());
        let e = check_digests(&r, &"m".repeat(32), &"b".repeat(64))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.gz")
                && e.contains("SHA-256")
                && e.contains(&"b".repeat(64))
                && e.contains(&"a".repeat(64))
                && e.contains("although its MD5 matches"),
            "{e}"
        );
    }
}
