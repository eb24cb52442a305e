//! Hostile dataset inputs: files in the real formats (IDX, gzip, CIFAR-10 batches,
//! tar.gz) crafted here to lie about their sizes, and a loopback HTTP server that
//! sends too much or the wrong bytes. Each must end in one clear error naming the
//! file, with bounded memory and nothing half-written. Where a broken input could
//! make the old code allocate without bound, the binary runs as a child under a
//! virtual-memory limit (`ulimit -v`), so a regression fails the test instead of
//! exhausting the machine.

mod common;
use common::{assert_mentions, fetch_args, gz};

use flate2::write::GzEncoder;
use initlab::data::{DataSource, Dataset, DatasetName, Normalization, cifar, idx};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

const IDX_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// A valid MNIST-format dataset of `n` training and `n` test images in `dir`,
/// gzipped, with deterministic contents.
fn write_mnist(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let pixels: Vec<u8> = (0..n * 784).map(|i| (i * 31 % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    for name in IDX_NAMES {
        let body = if name.contains("images") {
            idx::encode(&[n, 28, 28], &pixels)
        } else {
            idx::encode(&[n], &labels)
        };
        std::fs::write(dir.join(format!("{name}.gz")), gz(&body)).unwrap();
    }
}

fn load_err(data_dir: &Path, name: DatasetName) -> String {
    let source = DataSource::new(Some(data_dir.to_path_buf()));
    match Dataset::load(name, Normalization::None, &source) {
        Ok(_) => panic!("a broken {name} dataset loaded without an error"),
        Err(e) => format!("{e:#}"),
    }
}

/// Runs `initlab ARGS` under `ulimit -v LIMIT_KIB` (as its own process, so a failed
/// allocation aborts only it), killed after 60 s: a process that runs out of memory
/// while panicking can hang instead of exiting.
fn initlab_limited(limit_kib: u64, args: &[&str]) -> Output {
    std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v {limit_kib} && exec timeout -s KILL 60 \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_initlab"))
        .args(args)
        .env("INITLAB_PROGRESS", "0")
        .output()
        .expect("bash runs")
}

/// `initlab input-stats` on `dataset` from `data_dir` under `ulimit -v LIMIT_KIB`.
fn input_stats_under(limit_kib: u64, data_dir: &Path, dataset: &str) -> Output {
    let data_dir = data_dir.to_str().unwrap();
    initlab_limited(
        limit_kib,
        &[
            "input-stats",
            "--dataset",
            dataset,
            "--samples",
            "1000",
            "--data-dir",
            data_dir,
        ],
    )
}

/// The memory bound of these tests, in KiB: the smallest of 512 MiB, 1, 2, 4, …
/// 64 GiB under which `initlab input-stats` reads a valid 10-image MNIST and
/// finishes. That is libtorch's own virtual-memory baseline (shared libraries,
/// thread stacks, allocator reservations: machine-dependent, so measured here, not
/// assumed), rounded up to a power of two. A hostile file must be refused within
/// the same bound, which reading it whole would exceed by construction.
fn memory_bound_kib() -> u64 {
    static BOUND: OnceLock<u64> = OnceLock::new();
    *BOUND.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(&dir.path().join("mnist"), 10);
        let mut last = String::new();
        for step in 0..8 {
            let kib = (512u64 << 10) << step;
            let out = input_stats_under(kib, dir.path(), "mnist");
            if out.status.success() {
                eprintln!("memory bound: {} MiB of virtual memory", kib >> 10);
                return kib;
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!(
            "initlab did not run on a valid dataset even with 64 GiB of virtual memory:\n{last}"
        );
    })
}

/// A child that failed with initlab's own error (exit 1), not a crash or a signal.
fn assert_clean_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected initlab's error exit, got {:?}:\n{stderr}",
        out.status
    );
    assert!(stderr.lines().any(|l| l.starts_with("error: ")), "{stderr}");
    stderr
}

/// A gzip IDX file whose header declares 10 images (7,840 bytes) but whose stream
/// inflates to more than the memory bound: the header and data in a first gzip
/// member, then copies of a member of 64 MiB of zeros (gzip allows members to be
/// concatenated, so the file stays a few MB).
#[test]
fn a_gzip_bomb_idx_file_is_refused_with_bounded_memory() {
    let bound_kib = memory_bound_kib();
    let dir = tempfile::tempdir().unwrap();
    let mnist = dir.path().join("mnist");
    write_mnist(&mnist, 10);
    let pixels: Vec<u8> = (0..7840).map(|i| (i % 256) as u8).collect();
    let mut bomb = gz(&idx::encode(&[10, 28, 28], &pixels));
    let mut zeros = GzEncoder::new(Vec::new(), flate2::Compression::best());
    zeros.write_all(&vec![0u8; 64 << 20]).unwrap();
    let zeros = zeros.finish().unwrap();
    let copies = (bound_kib >> 16) + 16; // 64 MiB each: the bound plus 1 GiB
    for _ in 0..copies {
        bomb.extend_from_slice(&zeros);
    }
    let inflated_mib = copies * 64;
    assert!(inflated_mib << 10 >= bound_kib + (1 << 20));
    std::fs::write(mnist.join("train-images-idx3-ubyte.gz"), &bomb).unwrap();

    let out = input_stats_under(bound_kib, dir.path(), "mnist");
    let e = assert_clean_error(&out);
    assert!(
        e.contains("train-images-idx3-ubyte.gz")
            && e.contains("inflates beyond the 7840 bytes")
            && e.contains("initlab data fetch"),
        "the bomb ({inflated_mib} MiB inflated, {} bytes on disk) under {} MiB: {e}",
        bomb.len(),
        bound_kib >> 10
    );
}

/// Dimensions whose product is 2^64: unchecked, it wraps to 0, and an "empty"
/// array of 2^22 × 2^21 × 2^21 images passes every other check.
#[test]
fn idx_dimensions_that_overflow_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("train-images-idx3-ubyte");
    let labels = dir.path().join("train-labels-idx1-ubyte");
    std::fs::write(&images, idx::encode(&[1 << 22, 1 << 21, 1 << 21], &[])).unwrap();
    std::fs::write(&labels, idx::encode(&[1 << 22], &vec![0u8; 1 << 22])).unwrap();
    let e = match idx::read_split(&images, &labels, 10) {
        Ok((arr, _)) => panic!(
            "dimensions {:?} were accepted with {} bytes of data",
            arr.dims,
            arr.data.len()
        ),
        Err(e) => e.to_string(),
    };
    assert_mentions(&e, &[&images.display().to_string(), "overflow", "To fix"]);
}

/// A file shorter than its header says, plain and gzipped, and a header declaring
/// terabytes over a tiny file: one message naming the file, the sizes and the fix.
#[test]
fn idx_files_shorter_than_their_header_are_refused() {
    for gzipped in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mnist = dir.path().join("mnist");
        write_mnist(&mnist, 10);
        let name = if gzipped {
            "t10k-images-idx3-ubyte.gz"
        } else {
            "t10k-images-idx3-ubyte"
        };
        // nine images where the header promises ten
        let short = idx::encode(&[10, 28, 28], &vec![7u8; 9 * 784]);
        std::fs::remove_file(mnist.join("t10k-images-idx3-ubyte.gz")).unwrap();
        let bytes = if gzipped { gz(&short) } else { short };
        std::fs::write(mnist.join(name), bytes).unwrap();
        let e = load_err(dir.path(), DatasetName::Mnist);
        assert_mentions(
            &e,
            &[
                name,
                "truncated",
                "promises 7840 bytes",
                "7056",
                "To fix",
                "initlab data fetch mnist",
            ],
        );

        // 4 × 10⁹ images of 28 × 28: refused from the header, nothing allocated
        let huge = idx::encode(&[4_000_000_000, 28, 28], &[1, 2, 3]);
        let bytes = if gzipped { gz(&huge) } else { huge };
        std::fs::write(mnist.join(name), bytes).unwrap();
        let e = load_err(dir.path(), DatasetName::Mnist);
        assert_mentions(&e, &[name, "truncated", "To fix"]);
    }
}

/// One CIFAR-10 batch of `count` records.
fn cifar_batch(count: usize, seed: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * cifar::RECORD);
    for i in 0..count {
        out.push(((i + seed) % 10) as u8);
        out.extend(std::iter::repeat_n(((i + seed) * 13) as u8, 3072));
    }
    out
}

/// A `.tar.gz` of the given members, each (path, declared size, bytes written).
fn write_archive(path: &Path, members: &[(String, u64, Vec<u8>)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut tar_bytes = Vec::new();
    for (name, declared, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_path(name).unwrap();
        header.set_size(*declared);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar_bytes.extend_from_slice(header.as_bytes());
        tar_bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        tar_bytes.extend(std::iter::repeat_n(0u8, pad));
    }
    tar_bytes.extend(std::iter::repeat_n(0u8, 1024));
    std::fs::write(path, gz(&tar_bytes)).unwrap();
}

/// The six batches as archive members, `per_batch` records each.
fn six_batches(per_batch: usize) -> Vec<(String, u64, Vec<u8>)> {
    cifar::TRAIN_FILES
        .iter()
        .chain(std::iter::once(&cifar::TEST_FILE))
        .enumerate()
        .map(|(i, f)| {
            let data = cifar_batch(per_batch, i * 100);
            (format!("cifar-10-batches-bin/{f}"), data.len() as u64, data)
        })
        .collect()
}

/// The error loading CIFAR-10 from an archive of `members`.
fn archive_load_error(members: &[(String, u64, Vec<u8>)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_archive(&dir.path().join("cifar10").join(cifar::ARCHIVE), members);
    load_err(dir.path(), DatasetName::Cifar10)
}

/// The six batches as files in `folder`, `per_batch` records each.
fn write_batch_folder(folder: &Path, per_batch: usize) {
    std::fs::create_dir_all(folder).unwrap();
    for (member, _, data) in six_batches(per_batch) {
        let name = member.rsplit('/').next().unwrap();
        std::fs::write(folder.join(name), data).unwrap();
    }
}

/// A member whose tar header declares 1 TiB: the old reader reserved that much
/// before reading a byte. Run as a child under the memory bound.
#[test]
fn a_tar_member_declaring_a_huge_size_is_refused_without_allocating() {
    let bound_kib = memory_bound_kib();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("cifar10").join(cifar::ARCHIVE);
    let mut members = six_batches(2);
    members[0].1 = 1 << 40;
    write_archive(&archive, &members);
    let out = input_stats_under(bound_kib, dir.path(), "cifar10");
    let e = assert_clean_error(&out);
    assert_mentions(
        &e,
        &[
            cifar::ARCHIVE,
            "data_batch_1.bin",
            "declares 1099511627776 bytes",
            "30730000",
            "initlab data fetch cifar10",
        ],
    );

    // The same for a batch file in a folder (sparse, so it costs no disk): its
    // size is checked from the file system before it is read.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("cifar10");
    write_batch_folder(&folder, 2);
    let huge = std::fs::File::create(folder.join("data_batch_1.bin")).unwrap();
    huge.set_len(1 << 36).unwrap();
    drop(huge);
    let out = input_stats_under(bound_kib, dir.path(), "cifar10");
    let e = assert_clean_error(&out);
    assert_mentions(
        &e,
        &[
            "data_batch_1.bin",
            "68719476736 bytes is more than a CIFAR-10 batch",
        ],
    );
}

#[test]
fn a_cifar_archive_with_a_duplicate_batch_is_refused() {
    let mut members = six_batches(2);
    let other = cifar_batch(2, 7);
    members.push((
        "elsewhere/data_batch_2.bin".into(),
        other.len() as u64,
        other,
    ));
    let e = archive_load_error(&members);
    assert_mentions(
        &e,
        &[
            cifar::ARCHIVE,
            "data_batch_2.bin twice",
            "cifar-10-batches-bin/data_batch_2.bin",
            "elsewhere/data_batch_2.bin",
            "To fix",
        ],
    );
}

/// A batch cut after a whole record (here 3 records where the others hold 4, as
/// 9,999 would be among 10,000) is a whole number of records, so only comparing
/// the batches shows it; in an archive and in a folder.
#[test]
fn a_cifar_batch_truncated_at_a_record_boundary_is_refused() {
    let mut members = six_batches(4);
    members[2].2.truncate(3 * cifar::RECORD);
    members[2].1 = members[2].2.len() as u64;
    let e = archive_load_error(&members);
    assert_mentions(
        &e,
        &[
            "data_batch_3.bin",
            "3 records where the other batches hold 4",
            "truncated at a record boundary",
            "To fix",
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("cifar10").join("cifar-10-batches-bin");
    write_batch_folder(&folder, 4);
    std::fs::write(folder.join(cifar::TEST_FILE), cifar_batch(3, 900)).unwrap();
    let e = load_err(dir.path(), DatasetName::Cifar10);
    assert_mentions(
        &e,
        &[
            cifar::TEST_FILE,
            "3 records where the other batches hold 4",
            "To fix",
        ],
    );
}

/// How the loopback server answers a request for a path.
#[derive(Clone)]
enum Reply {
    /// The file under the root, with its length.
    File(PathBuf),
    /// A 302 to the same file name under `/`.
    Redirect,
    /// `Content-Length: n`, then only a few bytes.
    Announce(u64),
    /// `n` zero bytes with no length announced, ended by closing the connection.
    Stream(usize),
}

/// A minimal HTTP/1.1 server on 127.0.0.1: paths under `/r/` are redirected to
/// `/`, others are answered by `reply`. Returns its base URL.
fn serve(root: PathBuf, reply: fn(&Path, &str) -> Reply) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let root = root.clone();
            std::thread::spawn(move || answer(stream, &root, reply));
        }
    });
    format!("http://{addr}/")
}

fn answer(mut stream: TcpStream, root: &Path, reply: fn(&Path, &str) -> Reply) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request).into_owned();
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let file = path.rsplit('/').next().unwrap_or("").to_string();
    let choice = if path.starts_with("/r/") {
        Reply::Redirect
    } else {
        reply(root, &file)
    };
    let _ = match choice {
        Reply::File(p) => match std::fs::read(&p) {
            Ok(body) => write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .and_then(|_| stream.write_all(&body)),
            Err(_) => write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        },
        Reply::Redirect => write!(
            stream,
            "HTTP/1.1 302 Found\r\nLocation: /{file}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        Reply::Announce(n) => write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
        )
        .and_then(|_| stream.write_all(&[0u8; 1000])),
        Reply::Stream(n) => write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .and_then(|_| {
                let chunk = vec![0u8; 1 << 16];
                let mut sent = 0;
                while sent < n {
                    stream.write_all(&chunk)?;
                    sent += chunk.len();
                }
                Ok(())
            }),
    };
}

/// Whatever `initlab data fetch` leaves in a dataset folder (none of it may be a
/// partial download).
fn left_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn fetch_refuses_a_response_larger_than_the_file_can_be() {
    // Canonical checksums: a response is bounded by the canonical file's size
    // (9,912,422 bytes for MNIST's training images); this one streams 16 MiB with
    // no length announced.
    let url = serve(PathBuf::new(), |_, _| Reply::Stream(16 << 20));
    let data = tempfile::tempdir().unwrap();
    let out = common::run(&fetch_args("mnist", &url, data.path(), &[]));
    let e = assert_clean_error(&out);
    assert_mentions(
        &e,
        &[
            "train-images-idx3-ubyte.gz",
            "longer than the 9912422 bytes the canonical train-images-idx3-ubyte.gz has",
            "reading stopped there",
            "Nothing was written",
        ],
    );
    let left = left_in(&data.path().join("mnist"));
    assert!(left.is_empty(), "a refused download left {left:?}");

    // A mirror of other files (its own checksums): bounded by the largest
    // canonical file plus a margin; a server announcing a terabyte is refused
    // before its body is read.
    let url = serve(PathBuf::new(), |_, _| Reply::Announce(1 << 40));
    let data = tempfile::tempdir().unwrap();
    let sums = data.path().join("SUMS");
    let mut text = String::new();
    for name in IDX_NAMES {
        text.push_str(&format!("{}  {name}.gz\n", "0".repeat(32)));
    }
    std::fs::write(&sums, text).unwrap();
    let checksums = ["--checksums", sums.to_str().unwrap()];
    let out = common::run(&fetch_args("mnist", &url, data.path(), &checksums));
    let e = assert_clean_error(&out);
    assert_mentions(
        &e,
        &[
            "announces 1099511627776 bytes",
            &format!("more than the {} bytes", 170_052_171u64 + (32 << 20)),
            "refused without reading it",
        ],
    );
    let left = left_in(&data.path().join("mnist"));
    assert!(left.is_empty(), "a refused download left {left:?}");
}

/// A mirror whose files have the right MD5 but not the right SHA-256 (as a forged
/// file with a colliding MD5 would): refused, naming the file and both digests.
/// The pins in the source cannot be met by generated files, so the SHA-256 comes
/// from `--checksums`, which replaces the published MD5s and the pins alike (it
/// exists for mirrors of other files, and its user vouches for them).
#[test]
fn fetch_refuses_a_sha256_mismatch_even_with_a_matching_md5() {
    let mirror = tempfile::tempdir().unwrap();
    write_mnist(mirror.path(), 12);
    let url = serve(mirror.path().to_path_buf(), |root, file| {
        Reply::File(root.join(file))
    });
    // (MD5, SHA-256) of a mirror file, computed here independently of initlab.
    let digests = |file: &str| {
        use sha2::Digest;
        let bytes = std::fs::read(mirror.path().join(file)).unwrap();
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        (
            hex(&md5::Md5::digest(&bytes)),
            hex(&sha2::Sha256::digest(&bytes)),
        )
    };
    let data = tempfile::tempdir().unwrap();
    let sums = data.path().join("SUMS");
    let wrong = "5".repeat(64);
    let mut text = String::new();
    for name in IDX_NAMES {
        let file = format!("{name}.gz");
        let (md5, sha256) = digests(&file);
        text.push_str(&format!("{md5}  {file}\n"));
        let pin = if name.starts_with("train-images") {
            wrong.clone()
        } else {
            sha256
        };
        text.push_str(&format!("{pin}  {file}\n"));
    }
    std::fs::write(&sums, &text).unwrap();
    let checksums = ["--checksums", sums.to_str().unwrap()];
    let out = common::run(&fetch_args("mnist", &url, data.path(), &checksums));
    let e = assert_clean_error(&out);
    let actual = digests("train-images-idx3-ubyte.gz").1;
    assert_mentions(
        &e,
        &[
            "checksum mismatch for train-images-idx3-ubyte.gz",
            &format!("SHA-256 {actual}, expected {wrong}"),
            "although its MD5 matches",
            "To fix",
        ],
    );
    let left = left_in(&data.path().join("mnist"));
    assert!(left.is_empty(), "a refused download left {left:?}");

    // With the right SHA-256 the same mirror is accepted, through a redirect
    // (plain HTTP to plain HTTP stays allowed), and the dataset loads.
    let (_, right) = digests("train-images-idx3-ubyte.gz");
    std::fs::write(&sums, text.replace(&wrong, &right)).unwrap();
    let redirecting = format!("{url}r/");
    common::ok(&fetch_args("mnist", &redirecting, data.path(), &checksums));
    let source = DataSource::new(Some(data.path().to_path_buf()));
    let d = Dataset::load(DatasetName::Mnist, Normalization::None, &source).unwrap();
    assert_eq!(d.train_len(), 12);
}
