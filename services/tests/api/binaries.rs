//! The real executables: configuration is checked before serving, and SIGTERM stops them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use statelab_test_support::{eventually_blocking, send_signal, RedisServer, Signal, TempDir};

fn bin(name: &str) -> Command {
    let path = match name {
        "stateful" => env!("CARGO_BIN_EXE_stateful"),
        "stateless" => env!("CARGO_BIN_EXE_stateless"),
        _ => env!("CARGO_BIN_EXE_externalized"),
    };
    let mut cmd = Command::new(path);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("STATELAB_") {
            cmd.env_remove(var);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd
}

/// Starts a binary on port 0 and reads the address it bound from its JSON log; also returns
/// the log lines printed before it.
fn start(mut cmd: Command) -> (Child, SocketAddr, Vec<serde_json::Value>) {
    let mut child = cmd
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut before = Vec::new();
    let addr = loop {
        let line = lines
            .next()
            .expect("the service exited before serving")
            .expect("read");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!("--log-format json printed a line that is not JSON ({e}): {line}")
        });
        if let Some(listen) = v["fields"]["listen"].as_str() {
            break listen.parse().expect("address");
        }
        before.push(v);
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr, before)
}

fn sigterm_and_wait(child: &mut Child) -> std::process::ExitStatus {
    send_signal(child.id(), Signal::SIGTERM);
    eventually_blocking(
        "the service to exit after SIGTERM",
        Duration::from_secs(15),
        || child.try_wait().expect("wait"),
    )
}

#[test]
fn stateless_refuses_to_start_without_a_proper_secret() {
    let out = bin("stateless")
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("STATELAB_JWT_SECRET") && err.contains("--dev"),
        "{err}"
    );

    let out = bin("stateless")
        .args(["--listen", "127.0.0.1:0"])
        .env("STATELAB_JWT_SECRET", "too-short")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 32"), "{err}");
    assert!(
        !err.contains("too-short"),
        "the secret must not be echoed: {err}"
    );
}

#[test]
fn bad_flags_fail_fast_with_a_message() {
    let out = bin("stateful")
        .args(["--session-ttl", "0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--session-ttl"));
    let out = bin("externalized")
        .args(["--listen", "127.0.0.1:0", "--redis-url", "not a url"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("url"), "{err}");
    for bad in ["0", "-1", "lots", "100000001"] {
        let out = bin("stateful")
            .args(["--listen", "127.0.0.1:0"])
            .arg(format!("--max-sessions={bad}"))
            .output()
            .expect("run");
        assert!(!out.status.success(), "--max-sessions {bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--max-sessions"), "{bad}: {err}");
    }
    let out = bin("stateful")
        .args(["--listen", "127.0.0.1:0", "--log-format", "xml"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-format"));
}

#[tokio::test]
async fn each_binary_serves_and_stops_on_sigterm() {
    let redis = RedisServer::start().await;
    let secret_dir = TempDir::new("services-test");
    let secret_file = secret_dir.join("jwt-secret");
    std::fs::write(&secret_file, "0123456789abcdef0123456789abcdef\n").expect("secret");

    let mut stateful = bin("stateful");
    stateful.args(["--replica", "stateful-9"]);
    let mut stateless = bin("stateless");
    stateless
        .args(["--replica", "stateless-9"])
        .arg("--jwt-secret-file")
        .arg(&secret_file);
    let mut externalized = bin("externalized");
    externalized.args(["--replica", "externalized-9", "--redis-url", &redis.url()]);

    let http = reqwest::Client::new();
    for (cmd, replica) in [
        (stateful, "stateful-9"),
        (stateless, "stateless-9"),
        (externalized, "externalized-9"),
    ] {
        let (mut child, addr, _) = start(cmd);
        let r = http
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .expect("health");
        assert_eq!(r.status(), 200, "{replica}");
        assert_eq!(r.headers()["x-replica"], replica);
        let r = http
            .post(format!("http://{addr}/login"))
            .header("content-type", "application/json")
            .body(r#"{"username":"alice"}"#)
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 200, "{replica}");
        let status = sigterm_and_wait(&mut child);
        assert!(status.success(), "{replica} exited with {status}");
    }
}

#[test]
fn dev_mode_starts_with_a_warning() {
    let mut cmd = bin("stateless");
    cmd.env("STATELAB_DEV", "1");
    let (mut child, addr, before) = start(cmd);
    let warned = before.iter().any(|line| {
        line["level"] == "WARN"
            && line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("--dev"))
    });
    assert!(warned, "no --dev warning before serving: {before:?}");
    assert!(std::net::TcpStream::connect(addr).is_ok());
    assert!(sigterm_and_wait(&mut child).success());
}
