//! Run directories under concurrency and damage: one writer per part (a second
//! is refused with the holder's name), shards side by side, no torn or leftover
//! temporary file, damaged shards moved aside and recomputed, a failed run that
//! never removes a directory another process holds, SLURM sharding only when
//! asked, dataset bytes that may not change under a resume, and directories whose
//! unit ids were derived by another unit-key version, neither resumed nor merged.

mod common;
use common::*;
use initlab::rundir::RunDir;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// 24 units of width-10 networks: long enough (seconds) for a second process to
/// start while the first still holds the directory.
const LONG: &str = "name: long\nseed: 9\nkind: variance\ndataset: synthetic-small\ninit: [he_normal, glorot_normal]\nwidth: 10\ndepth: 40\nnetworks: 240\nblock: 20\n";

/// Six units in a second.
const SHORT: &str = "name: short\nseed: 3\nkind: variance\ndataset: synthetic-tiny\ninit: [he_normal, glorot_normal, gsm]\nwidth: 4\ndepth: 3\nnetworks: 16\nblock: 8\n";

/// A temporary folder holding `text` as the config NAME.yaml, and the config's path.
fn config(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), &format!("{name}.yaml"), text);
    (dir, cfg)
}

fn sorted(dir: &Path) -> polars::prelude::DataFrame {
    results(dir, &["init", "network", "layer"])
}

/// Runs `cfg` alone into a fresh directory beside `out` and asserts that `out`
/// holds the same results.
fn assert_same_as_a_run_alone(cfg: &Path, out: &Path) {
    let alone = out.with_file_name("alone");
    ok(&["run", s(cfg), "--out", s(&alone)]);
    assert_same(out, &alone);
}

fn assert_same(a: &Path, b: &Path) {
    let (x, y) = (sorted(a), sorted(b));
    assert_eq!(x.height(), y.height(), "row counts differ");
    assert!(
        x.drop("work_unit")
            .unwrap()
            .equals_missing(&y.drop("work_unit").unwrap()),
        "results differ between {} and {}",
        a.display(),
        b.display()
    );
}

/// Every file under `dir` whose name marks a temporary file.
fn temporaries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".part") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// Waits until a process's lock file names it as the holder.
fn wait_for_holder(lock: &Path, child: &mut std::process::Child) {
    let needle = format!("pid {}", child.id());
    let start = Instant::now();
    while !std::fs::read_to_string(lock).is_ok_and(|t| t.contains(&needle)) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "finished ({status}) before it was seen holding {}",
                lock.display()
            );
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no lock taken");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_second_writer_of_the_same_part_is_refused_and_the_first_result_is_whole() {
    let (dir, cfg) = config("long", LONG);
    let out = dir.path().join("shared");
    let mut first = initlab()
        .args(["run", s(&cfg), "--out", s(&out)])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_holder(&out.join("locks/all.lock"), &mut first);
    // The same command again, and a shard of the same sweep: both refused at once.
    let again = run(&["run", s(&cfg), "--out", s(&out)]);
    let shard = run(&["run", s(&cfg), "--out", s(&out), "--shard", "1/2"]);
    let still_running = first.try_wait().unwrap().is_none();
    assert!(!again.status.success() && !shard.status.success());
    let e = String::from_utf8_lossy(&again.stderr);
    assert_mentions(
        &e,
        &[
            "is being written by",
            &format!("pid {}", first.id()),
            &initlab::rundir::hostname(),
            "same part",
        ],
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    let e = String::from_utf8_lossy(&shard.stderr);
    assert_mentions(
        &e,
        &[
            "beside a run of the whole sweep",
            &format!("pid {}", first.id()),
        ],
    );
    assert!(
        still_running,
        "the first run ended before the second was tried: lengthen LONG"
    );
    assert!(first.wait().unwrap().success());
    assert_same_as_a_run_alone(&cfg, &out);
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
    // The refused runs left no trace in the metadata: one invocation, complete.
    let meta = read_json(&out.join("metadata.json"));
    let invocations = meta["invocations"].as_array().unwrap();
    assert_eq!(invocations.len(), 1);
    assert_eq!(invocations[0]["status"], "complete");
    assert_eq!(
        invocations[0]["git_commit"],
        initlab::rundir::GIT_COMMIT,
        "{meta}"
    );
}

#[test]
fn shards_run_side_by_side_with_whole_log_lines() {
    let (dir, cfg) = config("long", LONG);
    let out = dir.path().join("shared");
    let children: Vec<_> = ["1/2", "2/2"]
        .iter()
        .map(|part| {
            initlab()
                .args(["run", s(&cfg), "--out", s(&out), "--shard", part])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_same_as_a_run_alone(&cfg, &out);
    let log = std::fs::read_to_string(out.join("log.txt")).unwrap();
    let done = log.lines().filter(|l| l.contains(" done (")).count();
    assert_eq!(done, 24, "{log}");
    for line in log.lines() {
        assert!(
            humantime::parse_rfc3339(line.split(' ').next().unwrap()).is_ok()
                && line.matches(" unit ").count() <= 1,
            "torn log line: {line}"
        );
    }
}

#[test]
fn damaged_shards_are_moved_aside_and_recomputed() {
    let (dir, cfg) = config("short", SHORT);
    let out = dir.path().join("damaged");
    ok(&["run", s(&cfg), "--out", s(&out)]);
    let files = initlab::results::parquet_files(&out.join("results/short")).unwrap();
    assert_eq!(files.len(), 6);
    // Truncated, not Parquet at all, and a valid file that lost its value columns.
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(&files[1], b"these are not the bytes of a Parquet file").unwrap();
    let df = initlab::results::read_parquet(&files[2]).unwrap();
    let mut thin = df.select(["work_unit"]).unwrap();
    initlab::results::write_parquet(&files[2], &mut thin, &Default::default()).unwrap();

    let resumed = run(&["run", s(&cfg), "--out", s(&out)]);
    let e = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{e}");
    assert_eq!(e.matches("is damaged").count(), 3, "{e}");
    assert!(e.contains("3 units run, 3 already done"), "{e}");
    assert!(e.contains("missing: "), "{e}");
    let quarantined = std::fs::read_dir(out.join("quarantine/short"))
        .unwrap()
        .count();
    assert_eq!(quarantined, 3);
    let log = std::fs::read_to_string(out.join("log.txt")).unwrap();
    assert_eq!(log.matches("is damaged").count(), 3, "{log}");
    assert_same_as_a_run_alone(&cfg, &out);
}

#[test]
fn temporary_files_of_dead_writers_are_removed_on_the_next_run() {
    let (dir, cfg) = config("short", SHORT);
    let out = dir.path().join("leftovers");
    ok(&["run", s(&cfg), "--out", s(&out), "--shard", "1/2"]);
    let results = out.join("results/short");
    let host = initlab::rundir::hostname();
    // Above the kernel's largest pid (2^22), so no process can have it.
    let dead = format!(".a.parquet.{host}.4194305.0badf00d.part");
    let alive = format!(".b.parquet.{host}.{}.0badf00d.part", std::process::id());
    let elsewhere = ".c.parquet.some-other-host.4194305.0badf00d.part";
    let old_style = ".d.parquet.part";
    for name in [&dead, &alive, elsewhere, old_style] {
        std::fs::write(results.join(name), b"half").unwrap();
    }
    // A shard shares the directory: only what is surely dead goes.
    ok(&["run", s(&cfg), "--out", s(&out), "--shard", "2/2"]);
    let left = |n: &str| results.join(n).exists();
    assert!(!left(&dead) && left(&alive) && left(elsewhere) && left(old_style));
    assert!(
        std::fs::read_to_string(out.join("log.txt"))
            .unwrap()
            .contains(&dead)
    );
    // A whole run holds the directory alone: every temporary file is dead.
    ok(&["run", s(&cfg), "--out", s(&out)]);
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
}

#[test]
fn a_failed_run_never_removes_a_directory_another_process_holds() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("run");
    let open = |shard: &str| {
        RunDir::open(
            &root,
            "t",
            1,
            "text",
            "resolved\n",
            1,
            Some(shard.to_string()),
        )
        .unwrap()
    };
    // Shard 1 creates the directory, shard 2 joins it; shard 1 then fails before
    // its first unit: the directory stays, since shard 2 writes into it.
    let first = open("1/2");
    let second = open("2/2");
    first.discard_if_empty();
    assert!(root.join("config.resolved.yaml").exists());
    // Once no one else holds it, the same clean-up removes what it made.
    drop(second);
    std::fs::remove_dir_all(&root).unwrap();
    let alone = open("1/2");
    alone.discard_if_empty();
    assert!(!root.exists());
}

#[test]
fn a_run_inside_a_slurm_array_task_runs_its_whole_sweep_unless_asked() {
    let (dir, cfg) = config("short", SHORT);
    let in_array = |out: &str, extra: &[&str]| {
        initlab()
            .args(["run", s(&cfg), "--out", s(&dir.path().join(out))])
            .args(extra)
            .env("SLURM_ARRAY_TASK_ID", "1")
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .env("SLURM_ARRAY_TASK_MIN", "0")
            .output()
            .unwrap()
    };
    let o = in_array("plain", &[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("6 units run, 0 already done, of 6;"), "{e}");
    assert!(e.contains("--shard slurm"), "{e}");
    let o = in_array("asked", &["--shard", "slurm"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("(shard 2/3;"), "{e}");
    let e = fails(&["run", s(&cfg), "--shard", "slurm"]);
    assert!(e.contains("SLURM_ARRAY_TASK_ID"), "{e}");
    // An absurd part count is refused before anything is allocated for it.
    let started = Instant::now();
    let e = fails(&["run", s(&cfg), "--shard", "1/18446744073709551615"]);
    assert!(e.contains("N <= 100000"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn resuming_with_other_dataset_bytes_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_mnist(&data.join("mnist"), 64, 16, true);
    let cfg = write(
        dir.path(),
        "m.yaml",
        "name: m\nseed: 2\nkind: variance\ndataset: mnist\ninit: [he_normal, gsm]\nwidth: 4\ndepth: 2\nnetworks: 8\n",
    );
    let out = dir.path().join("out");
    let args = |extra: &'static [&'static str]| {
        let mut a = vec!["run", s(&cfg), "--out", s(&out), "--data-dir", s(&data)];
        a.extend_from_slice(extra);
        a
    };
    ok(&args(&[]));
    let first = read_json(&out.join("metadata.json"))["invocations"][0]["dataset_sha256"].clone();
    let images = "train-images-idx3-ubyte.gz";
    assert_eq!(first.as_object().unwrap().len(), 4, "{first}");
    assert!(first[images].as_str().is_some_and(|h| h.len() == 64));
    // Other training images of the same shape: same config, other bytes.
    let mut other = bytes(64 * 784, 77);
    other[0] ^= 1;
    std::fs::write(
        data.join("mnist").join(images),
        gz(&initlab::data::idx::encode(&[64, 28, 28], &other)),
    )
    .unwrap();
    let e = fails(&args(&[]));
    assert_mentions(&e, &[images, "SHA-256", "--allow-data-change"]);
    ok(&args(&["--allow-data-change"]));
    let invocations = read_json(&out.join("metadata.json"))["invocations"].clone();
    let last = invocations.as_array().unwrap().last().unwrap().clone();
    assert_ne!(last["dataset_sha256"][images], first[images]);
}

/// Sets the unit-key version a metadata file records, or removes it (`None`), as
/// an initlab that derived unit ids differently would have left it.
fn set_key_version(path: &Path, version: Option<&str>) {
    let mut meta = read_json(path);
    let map = meta.as_object_mut().unwrap();
    match version {
        Some(v) => map.insert("unit_key_version".into(), v.into()),
        None => map.remove("unit_key_version"),
    };
    std::fs::write(path, serde_json::to_string_pretty(&meta).unwrap()).unwrap();
}

#[test]
fn a_directory_of_another_unit_key_version_is_not_resumed() {
    let (dir, cfg) = config("short", SHORT);
    let out = dir.path().join("old");
    ok(&["run", s(&cfg), "--out", s(&out)]);
    let meta = out.join("metadata.json");
    let recorded = read_json(&meta);
    assert_eq!(recorded["unit_key_version"], initlab::seed::KEY_VERSION);
    // One unit's shard gone: a resume, were it allowed, would compute it again.
    let shards = || initlab::results::parquet_files(&out.join("results/short")).unwrap();
    std::fs::remove_file(&shards()[0]).unwrap();
    let before = shards();
    for (version, who) in [
        (None, "an older initlab"),
        (Some("initlab-unit-v1"), "another initlab"),
    ] {
        set_key_version(&meta, version);
        let meta_before = std::fs::read_to_string(&meta).unwrap();
        let e = fails(&["run", s(&cfg), "--out", s(&out)]);
        assert_mentions(
            &e,
            &[
                &format!("was made by {who}"),
                "unit ids and seeds are derived differently",
                initlab::seed::KEY_VERSION,
                "new --out",
                "delete the directory",
            ],
        );
        assert_eq!(e.lines().count(), 1, "{e}");
        assert_eq!(shards(), before, "a refused resume wrote results");
        assert_eq!(std::fs::read_to_string(&meta).unwrap(), meta_before);
    }
    // Made by this build, the same directory resumes: the missing unit alone runs.
    set_key_version(&meta, Some(initlab::seed::KEY_VERSION));
    let o = run(&["run", s(&cfg), "--out", s(&out)]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && e.contains("1 units run, 5 already done"),
        "{e}"
    );
}

#[test]
fn shards_of_another_unit_key_version_are_neither_joined_nor_merged() {
    let (dir, cfg) = config("short", SHORT);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&["run", s(&cfg), "--out", s(&a), "--shard", "1/2"]);
    ok(&["run", s(&cfg), "--out", s(&b), "--shard", "2/2"]);
    let old = b.join("metadata-shard-2-of-2.json");
    set_key_version(&old, Some("initlab-unit-v1"));
    // A shard of this build may not join a directory holding units of the old one.
    let e = fails(&["run", s(&cfg), "--out", s(&b), "--shard", "1/2"]);
    assert!(
        e.contains("metadata-shard-2-of-2.json records unit-key version `initlab-unit-v1`"),
        "{e}"
    );
    // Nor may the two be merged.
    let merged = dir.path().join("merged");
    let e = fails(&["merge", s(&a), s(&b), "--out", s(&merged)]);
    assert_mentions(
        &e,
        &[
            &format!("cannot merge {}", b.display()),
            "unit ids and seeds are derived differently",
            "new --out",
        ],
    );
    assert!(
        !merged.exists(),
        "a refused merge wrote {}",
        merged.display()
    );
    set_key_version(&old, Some(initlab::seed::KEY_VERSION));
    ok(&["merge", s(&a), s(&b), "--out", s(&merged)]);
}
