//! Points the final binaries at libtorch: an rpath to its lib/ so that initlab
//! runs without LD_LIBRARY_PATH. LIBTORCH comes from `.cargo/config.toml`
//! (./libtorch, made by ./libtorch-setup.sh) unless the user exported one.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(libtorch) = std::env::var("LIBTORCH") else {
        panic!("LIBTORCH is not set: run ./libtorch-setup.sh first (it makes ./libtorch)");
    };
    let lib = PathBuf::from(&libtorch).join("lib");
    if !lib.join("libtorch_cpu.so").exists() {
        panic!(
            "no libtorch found at {libtorch} (expected lib/libtorch_cpu.so): run ./libtorch-setup.sh, \
             or export LIBTORCH=/path/to/libtorch-2.13"
        );
    }
    let lib = lib.canonicalize().unwrap_or(lib);
    let version_file = PathBuf::from(&libtorch).join("build-version");
    println!("cargo:rerun-if-changed={}", version_file.display());
    let version = std::fs::read_to_string(&version_file)
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=INITLAB_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // The git commit the binary was built from, recorded in every run's metadata.
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    // "-dirty" when the files the binary is built from differ from that commit,
    // so that a result never claims a commit it was not made by.
    let sources = ["src", "build.rs", "Cargo.toml", "Cargo.lock", "assets"];
    let dirty = commit != "unknown"
        && std::process::Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=all", "--"])
            .args(sources)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .is_some_and(|o| !o.stdout.is_empty());
    let commit = if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    };
    println!("cargo:rustc-env=INITLAB_GIT_COMMIT={commit}");
    // Where HEAD and the index live: `.git/` in a plain clone, elsewhere in a
    // worktree (whose `.git` is a file), so ask git rather than assume.
    let git_path = |what: &str| {
        std::process::Command::new("git")
            .args(["rev-parse", "--git-path", what])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let git_files: Vec<String> = ["HEAD", "refs/heads", "packed-refs", "index"]
        .into_iter()
        .filter_map(git_path)
        .collect();
    for path in git_files.iter().map(String::as_str).chain(sources) {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
