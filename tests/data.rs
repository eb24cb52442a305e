//! Dataset tests on files generated here in the real formats (IDX plain and .gz,
//! CIFAR-10 binary batches in a folder and as .tar.gz), on Debian's real
//! Fashion-MNIST where installed, `data fetch` against a loopback HTTP server,
//! and the input statistics κ₀, c₀.

mod common;
use common::*;
use flate2::write::GzEncoder;
use initlab::data::{DataSource, Dataset, DatasetName, Normalization, cifar, idx};
use std::io::{Read, Write};
use std::path::Path;

fn source(dir: &Path) -> DataSource {
    DataSource::new(Some(dir.to_path_buf()))
}

/// A dataset from the data directory `dir`, which must load.
fn load(name: DatasetName, normalization: Normalization, dir: &Path) -> Dataset {
    Dataset::load(name, normalization, &source(dir)).unwrap()
}

fn mean_var(t: &tch::Tensor) -> (f64, f64) {
    let t = t.to_kind(tch::Kind::Double);
    (
        t.mean(tch::Kind::Double).double_value(&[]),
        t.var(false).double_value(&[]),
    )
}

#[test]
fn mnist_idx_plain_and_gz_load_and_normalise() {
    for gzip in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_mnist(&dir.path().join("mnist"), 120, 30, gzip);
        let d = load(DatasetName::Mnist, Normalization::Standard, dir.path());
        assert_eq!(d.train_x.size(), vec![120, 784]);
        assert_eq!(d.test_x.size(), vec![30, 784]);
        assert_eq!(d.train_y.kind(), tch::Kind::Int64);
        assert_eq!(d.train_x.kind(), tch::Kind::Float);
        let (m, v) = mean_var(&d.train_x);
        assert!(
            m.abs() < 1e-5 && (v - 1.0).abs() < 1e-4,
            "train set standardised: mean {m}, var {v}"
        );
        // the statistics used are those of the raw train pixels in [0, 1]
        let raw = bytes(120 * 784, 1);
        let mean = raw.iter().map(|&b| b as f64 / 255.0).sum::<f64>() / raw.len() as f64;
        assert!((d.channel_mean[0] - mean).abs() < 1e-12);
        // labels survive
        let labels: Vec<i64> = Vec::try_from(&d.train_y).unwrap();
        assert_eq!(
            labels,
            bytes(120, 2)
                .iter()
                .map(|b| (b % 10) as i64)
                .collect::<Vec<_>>()
        );
        // the authors' constants are a choice
        let a = load(DatasetName::Mnist, Normalization::Authors, dir.path());
        assert_eq!(a.channel_mean, vec![0.1307]);
        let first = raw[0] as f64 / 255.0;
        assert!((a.train_x.double_value(&[0, 0]) - (first - 0.1307) / 0.3081).abs() < 1e-5);
        let meta = d.describe();
        assert_eq!(meta["files"].as_array().unwrap().len(), 4);
    }
}

/// CIFAR-10 records: channel c of image i is filled with a value depending on (i, c).
fn cifar_batch(count: usize, offset: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        out.push(((i + offset) % 10) as u8);
        for c in 0..3 {
            out.extend(std::iter::repeat_n(((i + offset) * 7 + c * 50) as u8, 1024));
        }
    }
    out
}

fn write_cifar_folder(dir: &Path, per_file: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, f) in cifar::TRAIN_FILES.iter().enumerate() {
        std::fs::write(dir.join(f), cifar_batch(per_file, i * per_file)).unwrap();
    }
    std::fs::write(dir.join(cifar::TEST_FILE), cifar_batch(per_file, 1000)).unwrap();
}

fn write_cifar_archive(path: &Path, per_file: usize, skip: Option<&str>) {
    let file = std::fs::File::create(path).unwrap();
    let mut tar = tar::Builder::new(GzEncoder::new(file, flate2::Compression::fast()));
    for (i, f) in cifar::TRAIN_FILES
        .iter()
        .chain(std::iter::once(&cifar::TEST_FILE))
        .enumerate()
    {
        if Some(*f) == skip {
            continue;
        }
        let data = cifar_batch(
            per_file,
            if *f == cifar::TEST_FILE {
                1000
            } else {
                i * per_file
            },
        );
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("cifar-10-batches-bin/{f}"), &data[..])
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn cifar_folder_and_archive_load_channel_major() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar_folder(&dir.path().join("cifar10/cifar-10-batches-bin"), 8);
    let folder = load(DatasetName::Cifar10, Normalization::None, dir.path());
    assert_eq!(folder.train_x.size(), vec![40, 3072]);
    assert_eq!(folder.test_x.size(), vec![8, 3072]);
    // image 3, channel 2, any pixel: ((3·7 + 2·50) mod 256)/255
    let expected = (3 * 7 + 100) as f64 / 255.0;
    assert!((folder.train_x.double_value(&[3, 2 * 1024 + 17]) - expected).abs() < 1e-6);
    assert_eq!(folder.train_y.int64_value(&[13]), 3);

    let dir2 = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir2.path().join("cifar10")).unwrap();
    write_cifar_archive(&dir2.path().join("cifar10").join(cifar::ARCHIVE), 8, None);
    let archive = load(DatasetName::Cifar10, Normalization::Standard, dir2.path());
    assert_eq!(archive.train_x.size(), vec![40, 3072]);
    assert_eq!(archive.channel_mean.len(), 3);
    // per-channel standardisation on the training set
    let x = archive
        .train_x
        .view([40, 3, 1024])
        .to_kind(tch::Kind::Double);
    for c in 0..3 {
        let ch = x.select(1, c);
        let (m, v) = mean_var(&ch);
        assert!(
            m.abs() < 1e-6 && (v - 1.0).abs() < 1e-4,
            "channel {c}: {m} {v}"
        );
    }
}

/// Writes plain MNIST under `root` and replaces one of its files with `contents`.
fn mnist_with(root: &Path, file: &str, contents: &[u8]) {
    let m = root.join("mnist");
    write_mnist(&m, 10, 5, false);
    std::fs::write(m.join(file), contents).unwrap();
}

/// Cuts a file to the length `keep` gives for its current length.
fn shorten(path: &Path, keep: fn(usize) -> usize) {
    let mut data = std::fs::read(path).unwrap();
    data.truncate(keep(data.len()));
    std::fs::write(path, data).unwrap();
}

/// A dataset broken in one way: what breaks it (in an empty data directory) and
/// what the one error must then say.
type Breakage = (
    &'static str,
    DatasetName,
    fn(&Path),
    &'static [&'static str],
);

const BROKEN: [Breakage; 9] = [
    // missing: names the files and how to get them
    (
        "missing MNIST",
        DatasetName::Mnist,
        |_| {},
        &["train-images-idx3-ubyte", "initlab data fetch mnist"],
    ),
    (
        "missing CIFAR-10",
        DatasetName::Cifar10,
        |_| {},
        &["data_batch_1.bin", "cifar-10-binary.tar.gz"],
    ),
    (
        "wrong magic",
        DatasetName::Mnist,
        |d| mnist_with(d, "train-images-idx3-ubyte", b"<html>not found</html>"),
        &["wrong magic number"],
    ),
    (
        "truncated",
        DatasetName::Mnist,
        |d| {
            write_mnist(&d.join("mnist"), 10, 5, false);
            shorten(&d.join("mnist/t10k-images-idx3-ubyte"), |n| n - 100);
        },
        &["truncated"],
    ),
    (
        "mismatched image and label counts",
        DatasetName::Mnist,
        |d| mnist_with(d, "train-labels-idx1-ubyte", &idx::encode(&[9], &[1; 9])),
        &["10 images but"],
    ),
    (
        "label out of range",
        DatasetName::Mnist,
        |d| mnist_with(d, "train-labels-idx1-ubyte", &idx::encode(&[10], &[11; 10])),
        &["out of range"],
    ),
    (
        "a corrupt gzip",
        DatasetName::Mnist,
        |d| {
            write_mnist(&d.join("mnist"), 10, 5, true);
            shorten(&d.join("mnist/train-images-idx3-ubyte.gz"), |n| n / 2);
        },
        &["not a valid gzip file"],
    ),
    (
        "a truncated CIFAR batch",
        DatasetName::Cifar10,
        |d| {
            write_cifar_folder(&d.join("cifar10"), 4);
            shorten(&d.join("cifar10/data_batch_2.bin"), |n| n - 7);
        },
        &["not a whole number"],
    ),
    (
        "a CIFAR archive without a member",
        DatasetName::Cifar10,
        |d| {
            std::fs::create_dir_all(d.join("cifar10")).unwrap();
            write_cifar_archive(
                &d.join("cifar10").join(cifar::ARCHIVE),
                4,
                Some("data_batch_4.bin"),
            );
        },
        &["lacks the members data_batch_4.bin"],
    ),
];

#[test]
fn broken_files_give_one_clear_error() {
    for (what, name, break_it, expected) in BROKEN {
        let dir = tempfile::tempdir().unwrap();
        break_it(dir.path());
        let e = match Dataset::load(name, Normalization::Standard, &source(dir.path())) {
            Ok(_) => panic!("{what}: a broken dataset loaded"),
            Err(e) => format!("{e:#}"),
        };
        for fragment in expected {
            assert!(e.contains(fragment), "{what}: `{fragment}` not in {e}");
        }
    }
}

#[test]
fn fashion_mnist_from_the_debian_package() {
    let installed = initlab::data::locate::system_locations(DatasetName::FashionMnist)
        .iter()
        .any(|p| p.join("train-images-idx3-ubyte.gz").exists());
    if !present_or_skip(
        installed,
        "Debian's dataset-fashion-mnist",
        "apt-get install dataset-fashion-mnist",
    ) {
        return;
    }
    // an empty data directory: the dataset must come from the system location
    let dir = tempfile::tempdir().unwrap();
    let d = load(
        DatasetName::FashionMnist,
        Normalization::Standard,
        dir.path(),
    );
    assert_eq!(d.train_x.size(), vec![60_000, 784]);
    assert_eq!(d.test_x.size(), vec![10_000, 784]);
    let counts: Vec<i64> = Vec::try_from(d.train_y.bincount::<tch::Tensor>(None, 10)).unwrap();
    assert_eq!(
        counts,
        vec![6000; 10],
        "Fashion-MNIST's training classes are balanced"
    );
    let (m, v) = mean_var(&d.train_x);
    assert!(m.abs() < 1e-4 && (v - 1.0).abs() < 1e-3);
    assert!(
        d.channel_mean[0] > 0.25 && d.channel_mean[0] < 0.32,
        "{}",
        d.channel_mean[0]
    );
}

/// A minimal HTTP/1.1 server on loopback serving files from `root`; returns its base URL.
fn serve(root: std::path::PathBuf) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            match std::fs::read(root.join(&path)) {
                Ok(body) => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(&body);
                }
                Err(_) => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    format!("http://{addr}/")
}

#[test]
fn fetch_from_a_loopback_mirror_verifies_checksums() {
    let mirror = tempfile::tempdir().unwrap();
    write_mnist(mirror.path(), 20, 10, true);
    let url = serve(mirror.path().to_path_buf());

    // The published checksums do not match generated files: refused, nothing kept.
    let data = tempfile::tempdir().unwrap();
    let e = fails(&fetch_args("mnist", &url, data.path(), &[]));
    assert!(e.contains("checksum mismatch"), "{e}");
    let left: Vec<_> = std::fs::read_dir(data.path().join("mnist"))
        .unwrap()
        .collect();
    assert!(
        left.is_empty(),
        "a failed download leaves nothing behind: {left:?}"
    );

    // With the mirror's own checksums it succeeds and the dataset loads.
    let mut sums = String::new();
    for f in std::fs::read_dir(mirror.path()).unwrap() {
        let p = f.unwrap().path();
        sums.push_str(&format!(
            "{}  {}\n",
            initlab::data::fetch::md5_file(&p).unwrap(),
            p.file_name().unwrap().to_string_lossy()
        ));
    }
    let sums_file = write(data.path(), "MD5SUMS", &sums);
    let checksums = ["--checksums", s(&sums_file)];
    ok(&fetch_args("mnist", &url, data.path(), &checksums));
    let d = load(DatasetName::Mnist, Normalization::Standard, data.path());
    assert_eq!(d.train_len(), 20);
    // A second fetch finds the files verified and downloads nothing.
    ok(&fetch_args(
        "mnist",
        "http://127.0.0.1:9/",
        data.path(),
        &checksums,
    ));
    // A mirror without the files: a clear error naming the file.
    let empty = tempfile::tempdir().unwrap();
    let url2 = serve(empty.path().to_path_buf());
    let e = fails(&fetch_args("fashion-mnist", &url2, empty.path(), &[]));
    assert!(
        e.contains("could not fetch train-images-idx3-ubyte.gz"),
        "{e}"
    );
    // `data check` reports what is there and what is missing
    let report = ok(&["data", "check", "--data-dir", s(data.path())]);
    assert!(report.contains("mnist: present"), "{report}");
    assert!(report.contains("cifar10: missing"), "{report}");
}

#[test]
fn input_stats_match_gaussian_theory_on_synthetic_inputs() {
    // Gaussian inputs of dimension D with normal weights: κ₀ = 3(1 + 2/D), c₀ = 2/D.
    let d = Dataset::load(
        DatasetName::parse("synthetic-small").unwrap(),
        Normalization::Standard,
        &DataSource::new(None),
    )
    .unwrap();
    let dim = d.features() as f64;
    for (weights, kw) in [
        (initlab::init::dist::WeightDist::Normal, 3.0),
        (initlab::init::dist::WeightDist::Bernoulli, 1.0),
    ] {
        let st = initlab::experiment::input_stats::estimate(&d, weights, 3_000_000, 11).unwrap();
        let kappa = 3.0 * (1.0 + 2.0 / dim) + 3.0 * (kw - 3.0) / dim;
        let c0 = 2.0 / dim;
        assert!(
            (st.kappa0 - kappa).abs() < 3.0 * st.kappa0_se,
            "κ₀ {} ± {} vs {kappa}",
            st.kappa0,
            st.kappa0_se
        );
        assert!(
            (st.c0 - c0).abs() < 3.0 * st.c0_se,
            "c₀ {} ± {} vs {c0}",
            st.c0,
            st.c0_se
        );
        assert!(
            st.kappa0_se < 0.02 && st.c0_se < 0.02,
            "standard errors are small enough to mean something"
        );
    }
}

#[test]
fn input_stats_monte_carlo_agrees_with_the_exact_value_on_data() {
    let dir = tempfile::tempdir().unwrap();
    write_mnist(&dir.path().join("mnist"), 500, 10, false);
    let d = load(DatasetName::Mnist, Normalization::Standard, dir.path());
    let st = initlab::experiment::input_stats::estimate(
        &d,
        initlab::init::dist::WeightDist::Normal,
        2_000_000,
        5,
    )
    .unwrap();
    assert!(
        (st.kappa0 - st.kappa0_exact).abs() < 3.0 * st.kappa0_se,
        "{st:?}"
    );
    assert!((st.c0 - st.c0_exact).abs() < 3.0 * st.c0_se, "{st:?}");
    // and through the CLI with --out
    let out = dir.path().join("s.parquet");
    ok(&[
        "input-stats",
        "--dataset",
        "mnist",
        "--data-dir",
        s(dir.path()),
        "--samples",
        "200000",
        "--out",
        s(&out),
    ]);
    let df = initlab::results::read_parquet(&out).unwrap();
    assert_has_columns(
        &df,
        "input-stats",
        &["dataset", "samples", "kappa0", "kappa0_se", "c0", "c0_se"],
    );
}
