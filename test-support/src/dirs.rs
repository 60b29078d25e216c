//! Where tests put their files and find the workspace's binaries.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The workspace's root directory (where `scripts/` and `deploy/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support sits in the workspace root")
        .to_path_buf()
}

/// A fresh directory of its own under the system temp dir, for one test: a name no other test
/// or run can have (random), mode 0700. Removed on drop when the test passed; kept, with its
/// path printed, when it failed, so that the logs and reports in it can be read.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `statelab-<tag>-<16 hex digits>` under the system temp dir.
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new(tag: &str) -> TempDir {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("random bytes for a temp dir name");
        let path =
            std::env::temp_dir().join(format!("statelab-{tag}-{:016x}", u64::from_le_bytes(bytes)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            // Best effort: a file a killed child still writes may race the removal.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The binaries of the build profile the running test was built in (`target/<profile>/`, found
/// from the test's own path `target/<profile>/deps/<test>-<hash>`): the ones `cargo test` built
/// with it, whichever profile (`dev`, `ci`) and target directory it used.
///
/// # Panics
/// When the test executable's path is not laid out that way.
pub fn profile_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable sits in target/<profile>/deps/")
        .to_path_buf()
}

/// The lab's executables and the load generator the lab's tests drive: (package, binary, what it
/// is built from). What it is built from is
/// relative to the workspace root: its package's sources, manifest and embedded assets and those
/// of the workspace packages it depends on; every binary also depends on the workspace manifest
/// and the lock file ([`WORKSPACE_SOURCES`]).
const LAB_BINARIES: [(&str, &str, &[&str]); 6] = [
    ("statelab-services", "stateful", SERVICES),
    ("statelab-services", "stateless", SERVICES),
    ("statelab-services", "externalized", SERVICES),
    ("statelab-proxy", "statelab-proxy", PROXY),
    ("statelab-lab", "statelab-lab", LAB),
    ("statelab-load", "statelab-load", LOAD),
];
const SERVICES: &[&str] = &[
    "services/Cargo.toml",
    "services/src",
    "formats/Cargo.toml",
    "formats/src",
];
const PROXY: &[&str] = &[
    "proxy/Cargo.toml",
    "proxy/src",
    "proxy/assets",
    "formats/Cargo.toml",
    "formats/src",
];
const LAB: &[&str] = &[
    "lab/Cargo.toml",
    "lab/src",
    "proxy/Cargo.toml",
    "proxy/src",
    "proxy/assets",
    "formats/Cargo.toml",
    "formats/src",
];
const LOAD: &[&str] = &[
    "load/Cargo.toml",
    "load/src",
    "formats/Cargo.toml",
    "formats/src",
];
const WORKSPACE_SOURCES: &[&str] = &["Cargo.toml", "Cargo.lock"];

/// The newest modification time of a file under `path` (itself, if it is a file).
fn newest_under(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| newest_under(&entry.path()))
        .max()
}

/// The newest modification time among `sources` and [`WORKSPACE_SOURCES`] below `root`.
fn newest_source(root: &Path, sources: &[&str]) -> Option<SystemTime> {
    sources
        .iter()
        .chain(WORKSPACE_SOURCES)
        .filter_map(|rel| newest_under(&root.join(rel)))
        .max()
}

/// The first of the lab's binaries in `dir` that is missing or, with `root`, older than its
/// sources below `root`; with why.
fn stale_lab_binary(dir: &Path, root: Option<&Path>) -> Option<String> {
    LAB_BINARIES.iter().find_map(|(_, bin, sources)| {
        let built = std::fs::metadata(dir.join(bin)).and_then(|m| m.modified());
        let newest = root.and_then(|root| newest_source(root, sources));
        match (built, newest) {
            (Err(_), _) => Some(format!("{bin} is missing")),
            (Ok(built), Some(newest)) if built < newest => {
                Some(format!("{bin} is older than its sources"))
            }
            _ => None,
        }
    })
}

/// [`profile_bin_dir`], holding every binary a native lab runs (the three services, the proxy,
/// `statelab-lab`) and `statelab-load`, none older than its sources. `cargo test --workspace` builds them all; a test
/// run for one package alone (`cargo test -p statelab-load`) does not, so a test would
/// otherwise run whatever binaries an earlier build left, from sources since edited. When one is
/// missing or older than the newest of the lab's sources, `cargo build` brings them up to date
/// first, in the same profile and target directory (cargo itself decides what to rebuild).
///
/// # Panics
/// When `cargo build` fails or leaves a binary missing.
pub fn lab_bin_dir() -> PathBuf {
    // Checked once per test process: after a successful build cargo is the judge, and a binary
    // whose package did not change keeps its older time.
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED.get_or_init(up_to_date_lab_bin_dir).clone()
}

fn up_to_date_lab_bin_dir() -> PathBuf {
    let dir = profile_bin_dir();
    let root = workspace_root();
    let Some(why) = stale_lab_binary(&dir, Some(&root)) else {
        return dir;
    };
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("no profile name in {}", dir.display()),
    };
    eprintln!("{why}: cargo build --bins --profile {profile} for the lab's binaries");
    let target_dir = dir.parent().expect("target/<profile>/ has a parent");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(&root)
        .args(["build", "--bins", "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir);
    let mut packages: Vec<&str> = LAB_BINARIES.iter().map(|(package, ..)| *package).collect();
    packages.dedup();
    for package in packages {
        cmd.args(["-p", package]);
    }
    let status = cmd.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build of the lab's binaries failed, and the tests will not run binaries built from \
         other sources"
    );
    if let Some(why) = stale_lab_binary(&dir, None) {
        panic!("after cargo build, {why} in {}", dir.display());
    }
    dir
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_binary_older_than_its_own_sources_or_missing_is_stale() {
        use std::time::Duration;
        let root = TempDir::new("support-sources");
        let dir = TempDir::new("support-bins");
        let now = SystemTime::now();
        let touch = |path: PathBuf, at: SystemTime| {
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            let file = std::fs::File::create(&path).expect("create");
            file.set_modified(at).expect("set mtime");
        };
        let built = now - Duration::from_secs(60);
        for (_, bin, _) in LAB_BINARIES {
            touch(dir.join(bin), built);
        }
        touch(root.join("Cargo.lock"), built - Duration::from_secs(60));
        touch(
            root.join("services/src/lib.rs"),
            built - Duration::from_secs(1),
        );
        assert_eq!(stale_lab_binary(dir.path(), Some(root.path())), None);
        // A proxy source edited after the build: the proxy and the lab are stale, not the services.
        touch(root.join("proxy/src/lib.rs"), now);
        let why = stale_lab_binary(dir.path(), Some(root.path())).expect("stale");
        assert_eq!(why, "statelab-proxy is older than its sources");
        touch(dir.join("statelab-proxy"), now + Duration::from_secs(1));
        let why = stale_lab_binary(dir.path(), Some(root.path())).expect("stale");
        assert_eq!(why, "statelab-lab is older than its sources");
        touch(dir.join("statelab-lab"), now + Duration::from_secs(1));
        assert_eq!(stale_lab_binary(dir.path(), Some(root.path())), None);
        std::fs::remove_file(dir.join("stateful")).expect("remove");
        assert_eq!(
            stale_lab_binary(dir.path(), None).as_deref(),
            Some("stateful is missing")
        );
    }

    #[test]
    fn a_temp_dir_is_private_distinct_and_removed_on_drop() {
        let a = TempDir::new("support-test");
        let b = TempDir::new("support-test");
        assert_ne!(a.path(), b.path());
        let mode = std::fs::metadata(a.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(a.join("file"), "x").expect("write inside");
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists(), "{} survived its TempDir", path.display());
    }

    #[test]
    fn a_temp_dir_is_kept_when_its_test_fails() {
        let dir = TempDir::new("support-test-kept");
        let path = dir.path().to_path_buf();
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _dir = dir;
            panic!("a failing test");
        }));
        assert!(failed.is_err());
        assert!(path.exists(), "a failed test's directory is kept");
        std::fs::remove_dir_all(&path).expect("clean up");
    }

    #[test]
    fn the_workspace_root_holds_the_scripts() {
        assert!(workspace_root().join("scripts/lab").exists());
    }
}
