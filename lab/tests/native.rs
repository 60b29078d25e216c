//! The native lab through the real `statelab-lab` binary: real Redis, the real services and proxy,
//! on free ports in a private lab directory.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use statelab_formats::lab::{Killed, LabStatus, Memory, Scaled, Started};
use statelab_formats::lab::{RoutingView, Routings};
use statelab_formats::Routed;
use statelab_formats::{BalanceFactor, Design, Strategy};
use statelab_test_support::{eventually_blocking, lab_bin_dir, send_signal, Signal, TempDir};

/// A lab in its own directory on free ports; taken down when dropped, before its directory goes.
struct Lab {
    dir: PathBuf,
    bin_dirs: String,
    /// Holds the lab directory (and a test's own files beside it); dropped after `drop` below.
    tmp: TempDir,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let tmp = TempDir::new(&format!("lab-{tag}"));
        Lab {
            dir: tmp.join("lab"),
            bin_dirs: lab_bin_dir().display().to_string(),
            tmp,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_statelab-lab"));
        cmd.args(args)
            .env("STATELAB_LAB_DIR", &self.dir)
            .env("STATELAB_PORTS", "free")
            .env("STATELAB_BIN_DIR", &self.bin_dirs)
            .env("STATELAB_UP_TIMEOUT", "60")
            .env_remove("STATELAB_PROXY_PORT")
            .env_remove("STATELAB_ADMIN_PORT")
            .env_remove("STATELAB_REDIS_PORT")
            .env_remove("STATELAB_ADMIN_TOKEN");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("run statelab-lab {args:?}: {e}"))
    }

    /// Runs and insists on success; returns standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "statelab-lab {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The PID recorded for a part; `None` while there is no complete record (no file yet, or
    /// one being written: a record is the line `PID START_TIME\n`). A complete record that does
    /// not hold a PID fails the test.
    fn pid(&self, part: &str) -> Option<u32> {
        let path = self.dir.join("pids").join(format!("{part}.pid"));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) if text.ends_with('\n') => text,
            Ok(_) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("read {}: {e}", path.display()),
        };
        let pid = text
            .split_whitespace()
            .next()
            .and_then(|first| first.parse().ok())
            .unwrap_or_else(|| panic!("{} holds no PID: {text:?}", path.display()));
        Some(pid)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.command(&["down"]).output();
    }
}

/// The process exists and is not a zombie.
/// One of the lab's `--json` answers.
fn json<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not the answer expected ({e}): {text}"))
}

fn running(pid: u32) -> bool {
    let path = format!("/proc/{pid}/stat");
    let stat = match std::fs::read_to_string(&path) {
        Ok(stat) => stat,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(e) => panic!("read {path}: {e}"),
    };
    // `pid (comm) state ...`; comm may hold spaces and parentheses, so split after the last ')'.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        .unwrap_or_else(|| panic!("{path} is not a stat line: {stat}"));
    state != "Z"
}

fn status_line<'a>(status: &'a str, part: &str) -> &'a str {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(part))
        .unwrap_or_else(|| panic!("no status line for {part}:\n{status}"))
}

/// `down` stops the recorded processes of these parts, and the lab is no longer up.
fn down_stops(lab: &Lab, parts: &[&str]) {
    let pids: Vec<u32> = parts
        .iter()
        .map(|p| lab.pid(p).expect("a recorded pid"))
        .collect();
    lab.ok(&["down"]);
    for pid in pids {
        assert!(!running(pid), "pid {pid} survived down");
    }
    assert!(!lab.run(&["mode"]).status.success(), "mode fails once down");
}

/// The status code of a bare `GET path` on 127.0.0.1:`port` (no token), as curl would send it.
fn bare_get(port: u16, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin API");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read the answer");
    answer
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// With a token (`STATELAB_ADMIN_TOKEN` at `up`): every later command's admin requests carry it.
#[test]
fn up_kill_start_strategy_and_down_on_free_ports() {
    let lab = Lab::new("cycle");
    let up = lab
        .command(&["up"])
        .env("STATELAB_ADMIN_TOKEN", "native-lab-t0ken")
        .output()
        .expect("run statelab-lab up");
    assert!(
        up.status.success(),
        "up failed:\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(lab.ok(&["mode"]).trim(), "native");

    let ports = lab.ok(&["ports"]);
    let names: Vec<&str> = ports
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        names.len(),
        13,
        "redis, s3, nine replicas, proxy, admin:\n{ports}"
    );
    assert!(names.contains(&"externalized-3") && names.contains(&"admin"));
    let listed: statelab_formats::lab::Ports = json(&lab.ok(&["ports", "--json"]));
    assert_eq!(listed.ports.len(), 13, "{listed:?}");
    for (name, port) in &listed.ports {
        assert_eq!(
            listed.addresses.get(name).map(|a| a.to_string()),
            Some(format!("127.0.0.1:{port}")),
            "natively every part is reached on loopback at its port"
        );
    }
    let admin: u16 = ports
        .lines()
        .find_map(|l| l.strip_prefix("admin "))
        .and_then(|p| p.trim().parse().ok())
        .expect("the admin port");
    assert_eq!(
        bare_get(admin, "/admin/status"),
        401,
        "the proxy wants the token"
    );
    assert_eq!(bare_get(admin, "/admin/ready"), 200);

    let status = lab.ok(&["status"]);
    for part in ["stateful-2", "s3"] {
        assert!(status_line(&status, part).contains("healthy"), "{status}");
    }
    assert!(status.contains("stateful      cookie"), "{status}");

    let typed: LabStatus = json(&lab.ok(&["status", "--json"]));
    assert!(typed.all_up() && typed.mode == "native", "{typed:?}");
    let part = typed.part("stateful-2").expect("stateful-2 in status");
    assert_eq!(part.health.as_deref(), Some("healthy"), "{part:?}");
    assert_eq!(part.pid, lab.pid("stateful-2"));
    let proxy = typed.proxy.expect("the proxy's view, with the token");
    assert!(proxy.replica("stateful-2").is_some_and(|r| r.serving()));

    // kill: gone at once, and status says so (exit 1).
    let victim = lab.pid("stateful-2").expect("a recorded pid");
    let killed: Killed = json(&lab.ok(&["kill", "--json", "stateful-2"]));
    assert_eq!(
        (killed.killed.as_str(), killed.pid),
        ("stateful-2", Some(victim))
    );
    assert!(!running(victim), "stateful-2 (pid {victim}) still runs");
    let out = lab.run(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "status exits 1 with a part down"
    );
    assert!(status_line(&String::from_utf8_lossy(&out.stdout), "stateful-2").contains("down"));
    let out = lab.run(&["--json", "status"]);
    assert_eq!(out.status.code(), Some(1), "and with --json too");
    let typed: LabStatus = json(&String::from_utf8_lossy(&out.stdout));
    assert!(!typed.part("stateful-2").expect("listed").up, "{typed:?}");
    let again = lab.run(&["kill", "stateful-2"]);
    assert!(!again.status.success(), "killing a dead part is an error");

    // start: returns once the proxy routes to it again.
    let started: Started = json(&lab.ok(&["start", "--json", "stateful-2"]));
    assert_eq!(started.started, "stateful-2");
    assert_eq!(started.pid, lab.pid("stateful-2"));
    let status = lab.ok(&["status"]);
    assert!(
        status.contains("stateful-2 up ("),
        "the proxy routes to stateful-2 again:\n{status}"
    );

    // strategy: read and switch through the admin API.
    assert!(lab.ok(&["strategy"]).contains("stateless round-robin"));
    lab.ok(&["strategy", "stateless", "ip-hash"]);
    assert!(lab.ok(&["strategy"]).contains("stateless ip-hash"));
    let bad = lab.run(&["strategy", "stateless", "sticky"]);
    assert!(!bad.status.success(), "an unknown strategy is refused");
    balance_factor_through_strategy(&lab);

    // mem: a figure for each running replica.
    let mem = lab.ok(&["mem"]);
    assert_eq!(mem.lines().count(), 9, "{mem}");
    let typed: Memory = json(&lab.ok(&["mem", "--json"]));
    assert_eq!(typed.replicas.len(), 9, "{typed:?}");
    assert!(typed.replicas.values().all(|b| *b > 1_000_000), "{typed:?}");

    // down: every recorded process gone, the lab no longer up.
    down_stops(&lab, &["redis", "stateful-1", "stateless-3", "proxy"]);
}

/// The pool's routing as `strategy --json` reads it from the proxy.
fn routing(lab: &Lab, pool: &str) -> RoutingView {
    let all: Routings = json(&lab.ok(&["strategy", "--json"]));
    all.pools
        .into_iter()
        .find(|p| p.name == pool)
        .unwrap_or_else(|| panic!("no pool {pool} in strategy --json"))
}

/// `strategy POOL [STRATEGY] --balance-factor N|off`: set with a switch, read back, cleared alone;
/// refused for a strategy it does not bound, before anything changes.
fn balance_factor_through_strategy(lab: &Lab) {
    let factor = |n| BalanceFactor::new(n).ok();
    let said = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    let set = lab.run(&["strategy", "stateful", "ip-hash", "--balance-factor", "125"]);
    assert!(set.status.success(), "{}", said(&set));
    assert!(
        said(&set).contains("stateful: ip-hash, balance factor 125"),
        "{}",
        said(&set)
    );
    let read = routing(lab, "stateful");
    assert_eq!(
        (read.strategy, read.balance_factor),
        (Strategy::IpHash, factor(125))
    );
    let lines = lab.ok(&["strategy"]);
    assert!(
        lines
            .lines()
            .any(|l| l == "stateful ip-hash balance-factor 125"),
        "{lines}"
    );
    assert!(
        lines.lines().any(|l| l == "externalized round-robin"),
        "no factor, no suffix:\n{lines}"
    );

    // The factor alone, answered as JSON: the strategy stays.
    let routed: Routed =
        json(&lab.ok(&["--json", "strategy", "stateful", "--balance-factor", "200"]));
    assert_eq!(
        routed,
        Routed {
            pool: "stateful".into(),
            strategy: Strategy::IpHash,
            balance_factor: factor(200),
        }
    );

    let off = lab.run(&["strategy", "stateful", "--balance-factor", "off"]);
    assert!(off.status.success(), "{}", said(&off));
    assert!(
        said(&off).contains("stateful: ip-hash, balance factor off"),
        "{}",
        said(&off)
    );
    let read = routing(lab, "stateful");
    assert_eq!(
        (read.strategy, read.balance_factor),
        (Strategy::IpHash, None)
    );
    assert!(lab
        .ok(&["strategy"])
        .lines()
        .any(|l| l == "stateful ip-hash"));

    // Refused: a factor for round-robin, named or the pool's own, and a value out of range.
    let refused = lab.run(&[
        "strategy",
        "stateless",
        "round-robin",
        "--balance-factor",
        "125",
    ]);
    assert!(!refused.status.success(), "round-robin takes no factor");
    assert!(
        said(&refused).contains("does not apply to round-robin")
            && said(&refused).contains("cookie and ip-hash"),
        "{}",
        said(&refused)
    );
    let refused = lab.run(&["strategy", "externalized", "--balance-factor", "125"]);
    assert!(
        !refused.status.success(),
        "externalized routes by round-robin"
    );
    assert!(
        said(&refused).contains("externalized's strategy, round-robin"),
        "{}",
        said(&refused)
    );
    let refused = lab.run(&["strategy", "stateless", "cookie", "--balance-factor", "90"]);
    assert!(!refused.status.success(), "90 is below 100");
    assert!(
        said(&refused).contains("expected a percentage from 100 to 1000"),
        "{}",
        said(&refused)
    );
    for pool in ["stateless", "externalized"] {
        let read = routing(lab, pool);
        assert_eq!(read.balance_factor, None, "nothing was sent for {pool}");
    }
    assert_eq!(
        routing(lab, "stateless").strategy,
        Strategy::IpHash,
        "a refused change leaves the strategy too"
    );
    lab.ok(&["strategy", "stateful", "cookie"]);
}

#[test]
fn ctrl_c_during_up_stops_what_up_started() {
    // A stateful binary that never becomes healthy holds `up` in its wait.
    let lab = {
        let mut lab = Lab::new("ctrlc");
        let stub = lab.tmp.join("bin");
        std::fs::create_dir_all(&stub).expect("stub folder");
        let script = stub.join("stateful");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 600\n").expect("write stub");
        let mut perms = std::fs::metadata(&script).expect("stub").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&script, perms).expect("chmod stub");
        lab.bin_dirs = format!("{}:{}", stub.display(), lab.bin_dirs);
        lab
    };
    let mut up = lab.command(&["up"]).spawn().expect("spawn up");
    eventually_blocking("up to start the replicas", Duration::from_secs(30), || {
        lab.pid("stateful-1")
    });
    let started: Vec<u32> = ["redis", "stateful-1"]
        .iter()
        .map(|p| lab.pid(p).expect("a recorded pid"))
        .collect();
    send_signal(up.id(), Signal::SIGINT);
    let status = up.wait().expect("wait for up");
    assert_eq!(status.code(), Some(130), "up exits 130 on Ctrl-C");
    for pid in started {
        assert!(!running(pid), "pid {pid} survived the interrupted up");
    }
    assert!(!lab.run(&["mode"]).status.success(), "the lab is not up");
}

#[test]
fn scale_grows_and_shrinks_a_pool_under_load() {
    let lab = Lab::new("scale");
    lab.ok(&["up"]);
    let proxy_port: u16 = lab
        .ok(&["ports"])
        .lines()
        .find_map(|l| l.strip_prefix("proxy "))
        .and_then(|p| p.trim().parse().ok())
        .expect("a proxy port");

    // A steady stream through the proxy for the whole test, bounded in count.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let client = reqwest::Client::new();
                let url = format!("http://127.0.0.1:{proxy_port}/stateless/health");
                let (mut sent, mut failed, mut seen) =
                    (0u32, Vec::new(), std::collections::BTreeSet::new());
                while sent < 20_000 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sent += 1;
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            if let Some(name) =
                                r.headers().get("x-replica").and_then(|v| v.to_str().ok())
                            {
                                seen.insert(name.to_string());
                            }
                        }
                        Ok(r) => failed.push(r.status().to_string()),
                        Err(e) => failed.push(e.to_string()),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (sent, failed, seen)
            })
        })
    };

    let members = |lab: &Lab| -> Vec<String> {
        lab.ok(&["ports"])
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with("stateless-"))
            .map(str::to_string)
            .collect()
    };

    let scaled: Scaled = json(&lab.ok(&["scale", "--json", "stateless", "5"]));
    assert_eq!(scaled.pool, Design::Stateless);
    assert_eq!(scaled.added, ["stateless-4", "stateless-5"]);
    assert!(scaled.removed.is_empty());
    assert_eq!(scaled.replicas, members(&lab));
    assert_eq!(
        members(&lab),
        [
            "stateless-1",
            "stateless-2",
            "stateless-3",
            "stateless-4",
            "stateless-5"
        ]
    );
    let status = lab.ok(&["status"]);
    for name in ["stateless-4", "stateless-5"] {
        assert!(status_line(&status, name).contains("healthy"), "{status}");
        assert!(
            status.contains(&format!("{name} up (")),
            "routed to {name}:\n{status}"
        );
    }
    let added = lab.pid("stateless-5").expect("a recorded pid");

    // Shrink: drained (idle: round-robin pins no one), then at once.
    lab.ok(&["scale", "stateless", "3", "--drain", "10"]);
    let scaled: Scaled = json(&lab.ok(&["scale", "stateless", "2", "--now", "--json"]));
    assert_eq!(scaled.removed, ["stateless-3"]);
    assert_eq!(members(&lab), ["stateless-1", "stateless-2"]);
    assert!(!running(added), "a removed replica's process is stopped");
    let status = lab.ok(&["status"]);
    assert!(!status.contains("stateless-3"), "{status}");
    assert!(status.contains("stateless-2 up ("), "{status}");
    let generated = std::fs::read_to_string(lab.dir.join("proxy.toml")).expect("proxy.toml");
    assert!(
        generated.contains("stateless-2 =") && !generated.contains("stateless-3 ="),
        "the proxy's config follows the members:\n{generated}"
    );
    let refused = lab.run(&["scale", "stateless", "10"]);
    assert!(!refused.status.success(), "more than 9 is refused");
    let refused = lab.run(&["kill", "stateless-3"]);
    assert!(
        !refused.status.success(),
        "a removed replica cannot be killed"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed, seen) = stream.join().expect("the stream thread");
    assert!(sent > 100, "the stream ran: {sent}");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
    assert!(
        seen.contains("stateless-5"),
        "the added replicas took traffic: {seen:?}"
    );

    down_stops(&lab, &["redis", "stateless-1", "stateless-2", "proxy"]);
}
