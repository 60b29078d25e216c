//! A real S3-compatible object store (`s3s-fs`), owned by one test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::process::free_port;
use crate::TempDir;

/// How long a starting `s3s-fs` has to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The `s3s-fs` binary: `STATELAB_S3S_FS`, else `s3s-fs` on `PATH`, else the one `scripts/test`
/// builds into `target/tools/bin`.
pub fn s3s_fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STATELAB_S3S_FS").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| crate::workspace_root().join("target/tools/bin/s3s-fs"))
}

/// An `s3s-fs` process serving the S3 API on a loopback port of its own, its data in a private
/// directory, with a random access key and secret; killed on drop. A test can kill it and start
/// it again on the same port with the same data, as an object store that went away and came back.
#[derive(Debug)]
pub struct ObjectStore {
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
    root: TempDir,
    child: Mutex<Option<Child>>,
}

impl ObjectStore {
    /// Starts the store on a free port (another port when one is taken before it binds).
    ///
    /// # Panics
    /// When `s3s-fs` cannot be run, or does not come up on any of five ports.
    pub async fn start() -> Self {
        for _ in 0..5 {
            let store = ObjectStore {
                port: free_port(),
                access_key: format!("test{}", random_hex(8)),
                secret_key: random_hex(20),
                root: TempDir::new("s3s-fs"),
                child: Mutex::new(None),
            };
            if store.restart().await {
                return store;
            }
        }
        panic!("s3s-fs did not start on any of five free ports");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn slot(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Kills the store (SIGKILL) and waits for it to exit; its data stays on disk.
    pub fn kill(&self) {
        if let Some(mut child) = self.slot().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the store on its port over the same data; true once it accepts connections,
    /// false if it exited first (another process took the port) or did not within ten seconds.
    ///
    /// # Panics
    /// When `s3s-fs` cannot be run at all (not installed).
    pub async fn restart(&self) -> bool {
        self.kill();
        let binary = s3s_fs_binary();
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--access-key",
                &self.access_key,
                "--secret-key",
                &self.secret_key,
            ])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}); install it (cargo install s3s-fs --version 0.14.1 \
                     --features binary --locked) or run scripts/test, which does",
                    binary.display()
                )
            });
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                *self.slot() = Some(child);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        self.kill();
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the system's random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
