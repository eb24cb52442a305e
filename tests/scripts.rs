//! The shell scripts at the repository's root, run in throwaway copies:
//! libtorch-setup.sh's pinned wheels and zip-member checks, the project's
//! Python environment (.venv/) that run-tests.sh makes, fills and reuses, and
//! the note before a build. Each test copies the scripts into a temporary
//! folder, so nothing here touches the checkout's libtorch/, .venv/ or target/,
//! nor the real download cache, nor the network (pip runs with PIP_NO_INDEX);
//! `cargo` and `initlab` are stubs that log their arguments.

use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TORCH_WHEEL: &str = "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl";
const TORCH_SHA256: &str = "60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7";
const CUDART_WHEEL: &str =
    "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl";
const CUPTI_WHEEL: &str = "nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl";

/// Where the scripts under test come from: this checkout, or (to show that a
/// test fails on other versions of the scripts) INITLAB_TEST_SCRIPTS_FROM.
fn scripts_source() -> PathBuf {
    std::env::var_os("INITLAB_TEST_SCRIPTS_FROM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_executable(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The first python3 on PATH: the interpreter the scripts would use, which the
/// fake python3 of a test hands its work to.
fn real_python3() -> PathBuf {
    let path = std::env::var_os("PATH").expect("PATH is set");
    std::env::split_paths(&path)
        .map(|dir| dir.join("python3"))
        .find(|p| p.is_file())
        .expect("python3 is on PATH")
}

/// A temporary folder holding `proj/` (a copy of the scripts), `cache/` (the
/// download cache), `bin/` (stubs, first on PATH) and `log` (what stubs saw).
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    proj: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let proj = root.join("proj");
        let from = scripts_source();
        for file in [
            "libtorch-setup.sh",
            "run-tests.sh",
            "reproduce-paper.sh",
            "scripts/common.sh",
            "scripts/libtorch_wheels.py",
        ] {
            // Older versions of the scripts lack scripts/; copy what exists.
            if from.join(file).exists() {
                fs::create_dir_all(proj.join(file).parent().unwrap()).unwrap();
                fs::copy(from.join(file), proj.join(file)).unwrap();
            }
        }
        fs::create_dir_all(root.join("cache/wheels")).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("log"), "").unwrap();
        Sandbox {
            _dir: dir,
            root,
            proj,
        }
    }

    /// A libtorch that libtorch-setup.sh takes as set up, so it does nothing.
    fn with_libtorch(self) -> Sandbox {
        let lt = self.proj.join("libtorch");
        fs::create_dir_all(lt.join("lib")).unwrap();
        fs::create_dir_all(lt.join("include/torch")).unwrap();
        fs::write(lt.join("lib/libtorch_cpu.so"), "").unwrap();
        fs::write(lt.join("lib/libc10.so"), "").unwrap();
        fs::write(lt.join("build-version"), "2.13.0+cpu\n").unwrap();
        fs::write(lt.join(".initlab-complete"), "").unwrap();
        self
    }

    /// Stub `cargo` (a build makes a stub initlab) and stub notebook runner,
    /// and notebooks/requirements.txt holding `requirements`.
    fn with_stubs(self, requirements: &str) -> Sandbox {
        write_executable(
            &self.root.join("bin/cargo"),
            "#!/bin/sh\n\
             echo \"cargo $*\" >>\"$SCRIPT_LOG\"\n\
             echo 'stub cargo ran'\n\
             mkdir -p target/release\n\
             printf '#!/bin/sh\\necho \"initlab $*\" >>\"$SCRIPT_LOG\"\\n' >target/release/initlab\n\
             chmod +x target/release/initlab\n",
        );
        fs::create_dir_all(self.proj.join("notebooks")).unwrap();
        fs::write(
            self.proj.join("notebooks/run_notebooks.py"),
            "import os, sys\n\
             with open(os.environ['SCRIPT_LOG'], 'a') as log:\n\
             \x20   log.write('notebooks ' + sys.prefix + ' ' + ' '.join(sys.argv[1:]) + '\\n')\n",
        )
        .unwrap();
        fs::write(self.proj.join("notebooks/requirements.txt"), requirements).unwrap();
        self
    }

    /// A python3 first on PATH that runs the real one, except for what `refuse`
    /// matches (a `case` pattern over " ARGS "), which fails with `message`.
    fn with_python3(self, refuse: &str, message: &str) -> Sandbox {
        write_executable(
            &self.root.join("bin/python3"),
            &format!(
                "#!/bin/sh\ncase \" $* \" in\n    {refuse}) echo \"{message}\" >&2; exit 1 ;;\nesac\nexec '{}' \"$@\"\n",
                real_python3().display()
            ),
        );
        self
    }

    /// Runs one of the copied scripts with the sandbox's cache, stubs and log.
    fn run(&self, script: &str) -> Output {
        let path = format!(
            "{}:{}",
            self.root.join("bin").display(),
            std::env::var("PATH").unwrap()
        );
        Command::new("bash")
            .arg(self.proj.join(script))
            .current_dir(&self.proj)
            .env("PATH", path)
            .env("SCRIPT_LOG", self.root.join("log"))
            .env("INITLAB_CACHE", self.root.join("cache"))
            .env("XDG_CACHE_HOME", self.root.join("xdg-cache"))
            // Never the network, never the user's pip cache; cargo sets LIBTORCH
            // (.cargo/config.toml) for the tests it runs, and the script would
            // link the checkout's libtorch instead of setting one up.
            .env("PIP_NO_INDEX", "1")
            .env("PIP_NO_CACHE_DIR", "1")
            .env_remove("PIP_FIND_LINKS")
            .env_remove("PIP_INDEX_URL")
            .env_remove("LIBTORCH")
            .env_remove("INITLAB_TEST_OUTPUTS")
            .output()
            .expect("bash runs")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.root.join("log")).unwrap()
    }

    fn venv(&self) -> PathBuf {
        self.proj.join(".venv")
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_ok(out: &Output, what: &str) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

fn assert_fails(out: &Output, what: &str) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        !out.status.success(),
        "{what} should have failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    stderr
}

#[test]
fn libtorch_setup_refuses_cached_wheels_with_a_wrong_digest_before_extracting() {
    let sb = Sandbox::new();
    let fake = b"not the torch wheel\n";
    // All three names are present, so no version of the script downloads anything.
    for name in [TORCH_WHEEL, CUDART_WHEEL, CUPTI_WHEEL] {
        fs::write(sb.root.join("cache/wheels").join(name), fake).unwrap();
    }
    let out = sb.run("libtorch-setup.sh");
    let stderr = assert_fails(&out, "libtorch-setup.sh with a fake cached wheel");
    let cached = sb.root.join("cache/wheels").join(TORCH_WHEEL);
    for want in [
        cached.to_str().unwrap(),
        "does not match its pinned SHA-256",
        &format!("expected {TORCH_SHA256}"),
        &format!("actual   {}", sha256_hex(fake)),
        &format!("rm '{}' && ./libtorch-setup.sh", cached.display()),
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    assert!(!sb.proj.join("libtorch").exists(), "libtorch/ was made");
    assert!(
        !sb.proj.join("libtorch.partial").exists(),
        "libtorch.partial/ was made"
    );
    // The user's cache is reported, not altered; nothing was downloaded, so no venv.
    assert_eq!(fs::read(&cached).unwrap(), fake);
    assert!(!sb.venv().exists());
}

/// Zips made by Python's zipfile, which keeps member names as given.
fn make_zip(path: &Path, members: &[&str]) {
    let code = "import sys, zipfile\n\
                with zipfile.ZipFile(sys.argv[1], 'w') as z:\n\
                \x20   for name in sys.argv[2:]:\n\
                \x20       z.writestr(zipfile.ZipInfo(name), b'x')\n";
    let status = Command::new(real_python3())
        .arg("-c")
        .arg(code)
        .arg(path)
        .args(members)
        .status()
        .unwrap();
    assert!(status.success());
}

/// scripts/libtorch_wheels.py on `zip`: `verify` against `digest` when given, else `members`.
fn wheel_helper(sb: &Sandbox, zip: &Path, digest: Option<&str>) -> Output {
    let mut cmd = Command::new(real_python3());
    cmd.arg(sb.proj.join("scripts/libtorch_wheels.py"));
    match digest {
        Some(d) => cmd.arg("verify").arg(zip).arg(d),
        None => cmd.arg("members").arg(zip),
    };
    cmd.output().unwrap()
}

#[test]
fn wheel_members_with_parent_or_absolute_paths_are_refused() {
    let sb = Sandbox::new();
    let good = sb.root.join("good.whl");
    make_zip(
        &good,
        &[
            "torch/include/torch/a.h",
            "torch/lib/libc10.so",
            "torch-2.13.0.dist-info/RECORD",
        ],
    );
    assert_ok(&wheel_helper(&sb, &good, None), "members of a good wheel");

    for (name, members, why) in [
        (
            "parent.whl",
            vec!["torch/lib/libc10.so", "../evil"],
            "a '..' component",
        ),
        (
            "nested.whl",
            vec!["torch/include/a/../../../evil"],
            "a '..' component",
        ),
        ("absolute.whl", vec!["/abs/evil"], "an absolute path"),
    ] {
        let zip = sb.root.join(name);
        make_zip(&zip, &members);
        let bad = members.last().unwrap();
        let stderr = assert_fails(&wheel_helper(&sb, &zip, None), name);
        for want in [
            zip.to_str().unwrap(),
            &format!("'{bad}' with {why}"),
            "nothing was extracted",
            "rm '",
        ] {
            assert!(
                stderr.contains(want),
                "{name}: missing {want:?} in:\n{stderr}"
            );
        }
        // `verify`, what libtorch-setup.sh runs, checks the members once the digest
        // matches: a crafted wheel cannot match the real pins, so pin its own.
        let own = sha256_hex(&fs::read(&zip).unwrap());
        let stderr = assert_fails(&wheel_helper(&sb, &zip, Some(&own)), name);
        assert!(stderr.contains(&format!("'{bad}' with {why}")), "{stderr}");
    }

    let own = sha256_hex(&fs::read(&good).unwrap());
    assert_ok(
        &wheel_helper(&sb, &good, Some(&own)),
        "verify of a good wheel",
    );
    let stderr = assert_fails(
        &wheel_helper(&sb, &good, Some(TORCH_SHA256)),
        "wrong digest",
    );
    assert!(
        stderr.contains(&format!("expected {TORCH_SHA256}")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("actual   {own}")), "{stderr}");

    let not_zip = sb.root.join("truncated.whl");
    fs::write(&not_zip, b"PK\x03\x04 cut short").unwrap();
    let stderr = assert_fails(&wheel_helper(&sb, &not_zip, None), "not a zip");
    assert!(stderr.contains("is not a readable wheel"), "{stderr}");
}

#[test]
fn run_tests_installs_into_the_project_venv_never_the_system_python() {
    // The distributions' python3 refuses `pip install` outside a venv (PEP 668).
    let sb = Sandbox::new()
        .with_libtorch()
        .with_stubs("pip  # satisfied by the venv's own pip, so nothing is downloaded\n")
        .with_python3(
            "*\" -m pip install \"*",
            "error: externally-managed-environment (this python3 is the distribution's)",
        );
    let stdout = assert_ok(&sb.run("run-tests.sh"), "first run-tests.sh");
    assert!(
        stdout.contains("creating the project's Python environment"),
        "{stdout}"
    );
    assert!(
        stdout.contains("installing notebooks/requirements.txt"),
        "{stdout}"
    );
    assert!(
        stdout.contains("building initlab and its tests in release mode")
            && stdout.contains("usually about 20 minutes on two cores"),
        "no build note:\n{stdout}"
    );
    let log = sb.log();
    let venv = sb.venv().canonicalize().unwrap();
    for want in [
        "cargo test --release\n".to_string(),
        "initlab reproduce --scale quick --out outputs\n".to_string(),
        format!("notebooks {} --outputs outputs\n", venv.display()),
    ] {
        assert!(log.contains(&want), "missing {want:?} in the log:\n{log}");
    }

    // Reused as it is: no new venv, no install, no build note (the binary exists).
    fs::write(sb.root.join("log"), "").unwrap();
    let stdout = assert_ok(&sb.run("run-tests.sh"), "second run-tests.sh");
    assert!(
        !stdout.contains("creating") && !stdout.contains("installing"),
        "{stdout}"
    );
    assert!(!stdout.contains("building"), "{stdout}");
    assert!(sb.log().contains(&format!("notebooks {} ", venv.display())));

    // Changed requirements install again, into the same venv.
    let reqs = sb.proj.join("notebooks/requirements.txt");
    let mut text = fs::read_to_string(&reqs).unwrap();
    text.push_str("# changed\n");
    fs::write(&reqs, text).unwrap();
    let stdout = assert_ok(&sb.run("run-tests.sh"), "run-tests.sh after a change");
    assert!(
        stdout.contains("installing notebooks/requirements.txt"),
        "{stdout}"
    );
    assert!(!stdout.contains("creating"), "{stdout}");

    // A venv whose python is gone (its base Python removed) is made again.
    fs::remove_file(sb.venv().join("bin/python")).unwrap();
    let stdout = assert_ok(&sb.run("run-tests.sh"), "run-tests.sh with a broken venv");
    assert!(stdout.contains("is broken"), "{stdout}");
    assert!(
        stdout.contains("installing notebooks/requirements.txt"),
        "{stdout}"
    );
    assert!(sb.venv().join("bin/python").exists());
}

#[test]
fn without_python3_venv_the_scripts_name_the_package_to_install() {
    // Debian or Ubuntu without python3-venv (no ensurepip) and without python3-pip.
    let refuse = "*\" -m venv \"*|*ensurepip*|*\" -m pip \"*";
    let sb = Sandbox::new()
        .with_libtorch()
        .with_stubs("pip\n")
        .with_python3(refuse, "No module named ensurepip");
    let stderr = assert_fails(&sb.run("run-tests.sh"), "run-tests.sh without python3-venv");
    assert!(stderr.contains("apt-get install python3-venv"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one message:\n{stderr}");
    assert!(!sb.venv().exists(), "a half-made .venv was left");
    assert!(
        !sb.log().contains("cargo"),
        "it built before stopping:\n{}",
        sb.log()
    );

    // libtorch-setup.sh needs pip only to download: with nothing cached it stops
    // with the same message, having downloaded and extracted nothing.
    let sb = Sandbox::new().with_python3(refuse, "No module named ensurepip");
    let stderr = assert_fails(
        &sb.run("libtorch-setup.sh"),
        "libtorch-setup.sh without python3-venv",
    );
    assert!(stderr.contains("apt-get install python3-venv"), "{stderr}");
    assert!(!sb.venv().exists() && !sb.proj.join("libtorch.partial").exists());
    assert_eq!(
        fs::read_dir(sb.root.join("cache/wheels")).unwrap().count(),
        0
    );
}

#[test]
fn a_failed_requirements_install_stops_before_the_build_and_is_retried() {
    let sb = Sandbox::new()
        .with_libtorch()
        .with_stubs("initlab-test-no-such-package==1.0\n");
    let stderr = assert_fails(
        &sb.run("run-tests.sh"),
        "run-tests.sh with an uninstallable requirement",
    );
    let last = stderr.trim().lines().last().unwrap_or("");
    assert!(
        last.contains("pip could not install notebooks/requirements.txt") && last.contains("rerun"),
        "{stderr}"
    );
    assert!(!sb.log().contains("cargo"), "{}", sb.log());
    assert!(!sb.venv().join(".initlab-requirements.sha256").exists());
    // Nothing was recorded, so the next run tries the install again.
    let (stdout, _) = text(&sb.run("run-tests.sh"));
    assert!(
        stdout.contains("installing notebooks/requirements.txt"),
        "{stdout}"
    );
}

#[test]
fn reproduce_paper_says_it_is_building_then_shows_cargo_progress() {
    let sb = Sandbox::new().with_libtorch().with_stubs("pip\n");
    let stdout = assert_ok(&sb.run("reproduce-paper.sh"), "reproduce-paper.sh");
    let note = stdout.find("usually about 12 minutes on two cores");
    let build = stdout.find("stub cargo ran");
    assert!(
        matches!((note, build), (Some(n), Some(b)) if n < b),
        "no build note before the build:\n{stdout}"
    );
    let log = sb.log();
    // Not --quiet: cargo's own progress is what the user sees for those minutes.
    assert!(log.contains("cargo build --release\n"), "{log}");
    assert!(log.contains("initlab reproduce --scale quick\n"), "{log}");

    // Built and unchanged: no note.
    let stdout = assert_ok(&sb.run("reproduce-paper.sh"), "second reproduce-paper.sh");
    assert!(
        !stdout.contains("building") && !stdout.contains("rebuilding"),
        "{stdout}"
    );

    // A source newer than the binary: a rebuild, announced.
    fs::create_dir_all(sb.proj.join("src")).unwrap();
    fs::write(sb.proj.join("src/lib.rs"), "").unwrap();
    let old = Command::new("touch")
        .args(["-d", "@0"])
        .arg(sb.proj.join("target/release/initlab"))
        .status()
        .unwrap();
    assert!(old.success());
    let stdout = assert_ok(
        &sb.run("reproduce-paper.sh"),
        "reproduce-paper.sh after a change",
    );
    assert!(
        stdout.contains("rebuilding initlab: sources changed"),
        "{stdout}"
    );
}

#[test]
fn notebook_runner_without_its_packages_says_which_python_to_use() {
    // -S: no site-packages, as in a Python where requirements.txt was never installed.
    let runner = scripts_source().join("notebooks/run_notebooks.py");
    let run = |args: &[&str]| {
        Command::new(real_python3())
            .arg("-S")
            .arg(&runner)
            .args(args)
            .output()
            .unwrap()
    };
    let stderr = assert_fails(
        &run(&["--outputs", "/nonexistent"]),
        "runner without nbformat",
    );
    assert!(
        stderr.contains("nbformat is not installed for") && stderr.contains(".venv/bin/python"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one message:\n{stderr}");
    let help = assert_ok(&run(&["--help"]), "runner --help without nbformat");
    assert!(help.contains("--outputs"), "{help}");
}
