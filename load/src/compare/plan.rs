//! The comparison's runs as data: which design, under which strategy, with which fault or scale
//! event and which workload. Built from the options alone, before anything runs, so the matrix
//! the docs describe is the one a test reads.

use statelab_formats::{BalanceFactor, Design, Strategy};

use crate::fault::Shrink;

/// The replicas each pool goes back to after a scale run, and starts from in the default layout.
pub const POOL_SIZE: u8 = statelab_formats::lab::REPLICAS_PER_POOL;

/// The workload of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// New sessions per second.
    pub rate: u32,
    /// Cart adds per session.
    pub adds: u32,
    /// Think time between a session's requests.
    pub think_ms: u64,
    pub duration_s: u64,
    /// Source addresses the sessions come from (127.0.0.1 up); the generator's default when
    /// `None`.
    pub sources: Option<u32>,
    /// A closed population with heavy users instead of arrivals at `rate`.
    pub skewed: Option<Skewed>,
}

/// Heavy users: the closed model's `users`, their think times after a Zipf law (`--skew`), and
/// optionally their source addresses too (`--sources-skew`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skewed {
    pub users: u32,
    /// `zipf:S`.
    pub skew: &'static str,
    pub sources_skew: Option<&'static str>,
}

/// A pool resized while it serves: set to `from` untimed before the run, to `to` at `at_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalePlan {
    pub from: u8,
    pub to: u8,
    pub at_s: u64,
    pub shrink: Shrink,
}

/// A Redis topology brought up in a lab of its own for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLab {
    /// Its name in the report and its lab directory's.
    pub name: &'static str,
    /// The words after `scripts/lab up`.
    pub up: Vec<&'static str>,
}

/// One run of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRun {
    /// The run's directory under the output directory.
    pub dir: String,
    pub design: Design,
    pub strategy: Strategy,
    /// The name in the report; `DESIGN/STRATEGY` when `None`.
    pub label: Option<String>,
    /// Killed at `kill_at_s` (`redis-primary` for a store run); a replica is started again after
    /// the run.
    pub kill: Option<(String, u64)>,
    pub scale: Option<ScalePlan>,
    pub store: Option<StoreLab>,
    pub workload: Workload,
    /// Each replica's resident memory after the run.
    pub memory: bool,
    /// Every part's CPU over the run, against its budget.
    pub cpu: bool,
    /// The pool's balance factor during the run, for a strategy that takes one; off when
    /// `None`.
    pub balance_factor: Option<BalanceFactor>,
    /// The killed part started again at this second of the run (else after the run).
    pub restart_at_s: Option<u64>,
    /// Each session uploads an avatar that visitors read (`--avatar`).
    pub avatar: bool,
    /// Chat users in rooms instead of shop sessions (`--workflow chat`).
    pub chat: Option<ChatRooms>,
}

/// The chat workflow's closed population: `users` in rooms of `room_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatRooms {
    pub users: u32,
    pub room_size: u32,
}

impl PlannedRun {
    /// A run of `kind` (`files`, `chat`) named after its design, strategy and `what` happens,
    /// in directory `KIND-DESIGN-STRATEGY-WHAT`, with nothing else planned.
    pub(crate) fn named(
        kind: &str,
        design: Design,
        strategy: Strategy,
        what: &str,
        workload: Workload,
    ) -> Self {
        PlannedRun {
            dir: format!("{kind}-{design}-{strategy}-{what}"),
            design,
            strategy,
            label: Some(format!("{kind} {design}/{strategy} {what}")),
            kill: None,
            scale: None,
            store: None,
            workload,
            memory: false,
            cpu: false,
            balance_factor: None,
            restart_at_s: None,
            avatar: false,
            chat: None,
        }
    }

    /// The `statelab-load run` flags for this run, against the proxy at `proxy` and its admin
    /// API at `admin`, with `lab` as the lab command.
    pub fn run_flags(&self, proxy: u16, admin: u16, lab: &str, out: &str) -> Vec<String> {
        let w = &self.workload;
        let mut flags: Vec<String> = [
            "--service",
            self.design.as_str(),
            "--strategy",
            self.strategy.as_str(),
        ]
        .map(str::to_owned)
        .into();
        let mut push = |k: &str, v: String| {
            flags.push(k.to_owned());
            flags.push(v);
        };
        if let Some(label) = &self.label {
            push("--label", label.clone());
        }
        push(
            "--target",
            format!("http://127.0.0.1:{proxy}/{}", self.design),
        );
        push("--admin", format!("http://127.0.0.1:{admin}"));
        match (&w.skewed, &self.chat) {
            (_, Some(chat)) => {
                push("--workflow", "chat".into());
                push("--model", "closed".into());
                push("--users", chat.users.to_string());
                push("--room-size", chat.room_size.to_string());
            }
            (None, None) => push("--rate", w.rate.to_string()),
            (Some(sk), None) => {
                push("--model", "closed".into());
                push("--users", sk.users.to_string());
                push("--skew", sk.skew.into());
                if let Some(z) = sk.sources_skew {
                    push("--sources-skew", z.into());
                }
            }
        }
        if self.chat.is_none() {
            push("--adds", w.adds.to_string());
        }
        push("--think-ms", w.think_ms.to_string());
        push("--duration", w.duration_s.to_string());
        if let Some(n) = w.sources {
            push("--sources", n.to_string());
        }
        push("--lab", lab.to_owned());
        if let Some((victim, at)) = &self.kill {
            push("--kill", format!("{victim}@{at}"));
        }
        if let Some(at) = self.restart_at_s {
            push("--restart", format!("@{at}"));
        }
        if let Some(sc) = &self.scale {
            let how = match sc.shrink {
                Shrink::Default => String::new(),
                Shrink::Now => ":now".into(),
                Shrink::Drain(s) => format!(":drain={s}"),
            };
            push(
                "--scale",
                format!("{}={}@{}{how}", self.design, sc.to, sc.at_s),
            );
        }
        push("--out", out.to_owned());
        if self.avatar {
            flags.push("--avatar".into());
        }
        if self.memory {
            flags.push("--memory".into());
        }
        if self.cpu {
            flags.push("--cpu".into());
        }
        flags
    }
}

/// What the comparison is asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub docker: bool,
    /// The four kill runs.
    pub kills: bool,
    /// The scaling runs.
    pub scale: bool,
    /// The store runs (native only).
    pub store: bool,
    /// The skew runs: heavy users, the imbalance sticky routing makes, and bounded loads.
    pub skew: bool,
    /// The skew runs' workload (closed, with heavy users); each pool grows by one at half time.
    pub skew_workload: Workload,
    /// The balance factor of the bounded runs.
    pub skew_factor: BalanceFactor,
    /// The file runs: avatars on a replica's disk against the object store, under a replica
    /// killed, a scale-in and the object store killed.
    pub files: bool,
    /// The file runs' workload.
    pub files_workload: Workload,
    /// The chat runs: rooms in memory against rooms through a broker, a replica killed and a
    /// pool shrunk under open sockets.
    pub chat: bool,
    /// The chat runs' length and think time (`rate` and `adds` unused), and their users.
    pub chat_workload: Workload,
    pub chat_rooms: ChatRooms,
    /// The kill and store runs' workload; the kill comes at a third of it.
    pub workload: Workload,
    /// The scale runs' workload and when the pool is resized.
    pub scale_workload: Workload,
    pub scale_at_s: u64,
    /// The longest drain of a replica removed by a scale run.
    pub scale_drain_s: u64,
}

impl Matrix {
    /// The runs, in the order they run and the report shows them.
    pub fn runs(&self) -> Vec<PlannedRun> {
        let mut runs = Vec::new();
        let kill_at = self.workload.duration_s / 3;
        let kill_run = |design: Design, strategy: Strategy, victim: Option<&str>| PlannedRun {
            dir: format!("{design}-{strategy}"),
            design,
            strategy,
            label: None,
            kill: victim.map(|v| (v.to_owned(), kill_at)),
            scale: None,
            store: None,
            workload: self.workload,
            memory: true,
            cpu: false,
            balance_factor: None,
            restart_at_s: None,
            avatar: false,
            chat: None,
        };
        if self.kills {
            // Sessions live in the replica that dies; then why stateful needs sticky routing;
            // then the session travels with the client, and lives in Redis.
            runs.push(kill_run(
                Design::Stateful,
                Strategy::Cookie,
                Some("stateful-2"),
            ));
            runs.push(kill_run(Design::Stateful, Strategy::RoundRobin, None));
            runs.push(kill_run(
                Design::Stateless,
                Strategy::RoundRobin,
                Some("stateless-2"),
            ));
            runs.push(kill_run(
                Design::Externalized,
                Strategy::RoundRobin,
                Some("externalized-2"),
            ));
        }
        if self.scale {
            // Behind Docker's NAT every host client is the bridge gateway: ip-hash and ip-modulo
            // would see one client, so they are left out there.
            let sticky: &[Strategy] = if self.docker {
                &[Strategy::Cookie]
            } else {
                &[Strategy::Cookie, Strategy::IpHash, Strategy::IpModulo]
            };
            let grow = (POOL_SIZE, POOL_SIZE + 1, Shrink::Default);
            let drain = (POOL_SIZE + 1, POOL_SIZE, Shrink::Drain(self.scale_drain_s));
            let now = (POOL_SIZE + 1, POOL_SIZE, Shrink::Now);
            let mut scale_run = |design: Design, strategy: Strategy, (from, to, shrink)| {
                let mut dir = format!("{design}-{strategy}-{from}-to-{to}");
                let mut label = format!("{design}/{strategy} {from}->{to}");
                match shrink {
                    Shrink::Default => {}
                    Shrink::Now => {
                        dir.push_str("-now");
                        label.push_str(" now");
                    }
                    Shrink::Drain(_) => {
                        dir.push_str("-drain");
                        label.push_str(" drain");
                    }
                }
                runs.push(PlannedRun {
                    dir,
                    design,
                    strategy,
                    label: Some(label),
                    kill: None,
                    scale: Some(ScalePlan {
                        from,
                        to,
                        at_s: self.scale_at_s,
                        shrink,
                    }),
                    store: None,
                    workload: Workload {
                        sources: Some(if self.docker { 1 } else { 250 }),
                        ..self.scale_workload
                    },
                    memory: false,
                    cpu: false,
                    balance_factor: None,
                    restart_at_s: None,
                    avatar: false,
                    chat: None,
                });
            };
            for &strategy in sticky {
                for step in [grow, drain, now] {
                    scale_run(Design::Stateful, strategy, step);
                }
            }
            scale_run(Design::Stateless, Strategy::RoundRobin, grow);
            scale_run(Design::Externalized, Strategy::RoundRobin, grow);
        }
        if self.store {
            for (name, up) in [
                ("single", vec!["--redis", "single"]),
                ("sentinel", vec!["--redis", "sentinel"]),
                (
                    "sentinel-wait1",
                    vec!["--redis", "sentinel", "--redis-wait", "1"],
                ),
                ("cluster", vec!["--redis", "cluster"]),
            ] {
                runs.push(PlannedRun {
                    dir: format!("store-{name}"),
                    design: Design::Externalized,
                    strategy: Strategy::RoundRobin,
                    label: Some(format!("externalized/{name}")),
                    kill: Some(("redis-primary".into(), kill_at)),
                    scale: None,
                    store: Some(StoreLab { name, up }),
                    workload: self.workload,
                    memory: false,
                    cpu: false,
                    balance_factor: None,
                    restart_at_s: None,
                    avatar: false,
                    chat: None,
                });
            }
        }
        if self.skew {
            runs.extend(self.skew_runs());
        }
        if self.files {
            runs.extend(self.files_runs());
        }
        if self.chat {
            runs.extend(self.chat_runs());
        }
        runs
    }

    /// Chat users in rooms, each design with a replica killed at a third and started again at
    /// two thirds, then with its pool shrunk from 3 to 2 at half time: stateful under cookie
    /// (its sockets stay where its session is), the others under round-robin.
    fn chat_runs(&self) -> Vec<PlannedRun> {
        let w = self.chat_workload;
        let (kill_at, restart_at) = (w.duration_s / 3, 2 * w.duration_s / 3);
        let mut runs = Vec::new();
        for design in Design::ALL {
            let strategy = if design == Design::Stateful {
                Strategy::Cookie
            } else {
                Strategy::RoundRobin
            };
            let run = |what: &str| PlannedRun {
                chat: Some(self.chat_rooms),
                ..PlannedRun::named("chat", design, strategy, what, w)
            };
            runs.push(PlannedRun {
                kill: Some((format!("{design}-2"), kill_at)),
                restart_at_s: Some(restart_at),
                ..run("kill")
            });
            runs.push(PlannedRun {
                scale: Some(ScalePlan {
                    from: POOL_SIZE,
                    to: POOL_SIZE - 1,
                    at_s: w.duration_s / 2,
                    shrink: Shrink::Now,
                }),
                ..run(&format!("{POOL_SIZE}-to-{}", POOL_SIZE - 1))
            });
        }
        runs
    }

    /// Avatars: the stateful design keeps each on the disk of the replica that took the upload,
    /// the others in the object store. A replica killed at a third and started again at two
    /// thirds; the stateful pool under address affinity, whole and then shrunk by one at half
    /// time (the removed replica's disk goes with it); and the object store itself killed and
    /// started again. Behind Docker's NAT every host client is one address, so the stateful
    /// runs keep to cookie there.
    fn files_runs(&self) -> Vec<PlannedRun> {
        let w = Workload {
            sources: Some(if self.docker { 1 } else { 250 }),
            ..self.files_workload
        };
        let (kill_at, restart_at) = (w.duration_s / 3, 2 * w.duration_s / 3);
        let affinity = if self.docker {
            Strategy::Cookie
        } else {
            Strategy::IpHash
        };
        let run = |design: Design, strategy: Strategy, what: &str| PlannedRun {
            avatar: true,
            ..PlannedRun::named("files", design, strategy, what, w)
        };
        let killed = |design: Design, strategy: Strategy, victim: &str, what: &str| PlannedRun {
            kill: Some((victim.to_owned(), kill_at)),
            restart_at_s: Some(restart_at),
            ..run(design, strategy, what)
        };
        let mut runs = vec![
            killed(Design::Stateful, Strategy::Cookie, "stateful-2", "kill"),
            run(Design::Stateful, affinity, "whole"),
            PlannedRun {
                scale: Some(ScalePlan {
                    from: POOL_SIZE,
                    to: POOL_SIZE - 1,
                    at_s: w.duration_s / 2,
                    shrink: Shrink::Now,
                }),
                ..run(
                    Design::Stateful,
                    affinity,
                    &format!("{POOL_SIZE}-to-{}", POOL_SIZE - 1),
                )
            },
            killed(
                Design::Stateless,
                Strategy::RoundRobin,
                "stateless-2",
                "kill",
            ),
            killed(
                Design::Externalized,
                Strategy::RoundRobin,
                "externalized-2",
                "kill",
            ),
            killed(Design::Externalized, Strategy::RoundRobin, "s3", "s3-down"),
        ];
        if self.docker {
            // Cookie places every visitor afresh: the whole pool shows nothing the kill run
            // does not.
            runs.remove(1);
        }
        runs
    }

    /// Heavy users against sticky routing, with and without bounded loads, then round-robin
    /// against least-requests for the designs that need no affinity: each pool grown from 3 to 4
    /// at half time, so the report shows whether the new replica relieved the hot one. Behind
    /// Docker's NAT every host client is one address, so ip-hash is left out there.
    fn skew_runs(&self) -> Vec<PlannedRun> {
        let w = self.skew_workload;
        let at_s = w.duration_s / 2;
        let mut cases = vec![
            (Design::Stateful, Strategy::Cookie, None),
            (Design::Stateful, Strategy::Cookie, Some(self.skew_factor)),
        ];
        if !self.docker {
            cases.extend([
                (Design::Stateful, Strategy::IpHash, None),
                (Design::Stateful, Strategy::IpHash, Some(self.skew_factor)),
                (Design::Externalized, Strategy::IpHash, None),
                (
                    Design::Externalized,
                    Strategy::IpHash,
                    Some(self.skew_factor),
                ),
            ]);
        }
        for design in [Design::Stateless, Design::Externalized] {
            cases.extend([
                (design, Strategy::RoundRobin, None),
                (design, Strategy::LeastRequests, None),
            ]);
        }
        cases
            .into_iter()
            .map(|(design, strategy, factor)| {
                let bounded = factor.map_or(String::new(), |f| format!(" bf{f}"));
                PlannedRun {
                    dir: format!("skew-{design}-{strategy}{}", bounded.replace(' ', "-")),
                    design,
                    strategy,
                    label: Some(format!("skew {design}/{strategy}{bounded}")),
                    kill: None,
                    scale: Some(ScalePlan {
                        from: POOL_SIZE,
                        to: POOL_SIZE + 1,
                        at_s,
                        shrink: Shrink::Default,
                    }),
                    store: None,
                    workload: Workload {
                        sources: Some(if self.docker { 1 } else { 40 }),
                        skewed: w.skewed.map(|sk| Skewed {
                            // The ip-hash runs: the users behind few addresses, an office NAT.
                            sources_skew: (strategy == Strategy::IpHash)
                                .then_some(sk.sources_skew)
                                .flatten(),
                            ..sk
                        }),
                        ..w
                    },
                    memory: false,
                    cpu: true,
                    balance_factor: factor,
                    restart_at_s: None,
                    avatar: false,
                    chat: None,
                }
            })
            .collect()
    }

    /// The report's title: the lab's mode and each kind of run's length and rate.
    pub fn title(&self) -> String {
        let mode = if self.docker { "docker" } else { "native" };
        let mut title = format!("statelab: stateful vs stateless, measured ({mode} lab");
        let w = &self.workload;
        if self.kills {
            title += &format!(", {}s kill runs at {} sessions/s", w.duration_s, w.rate);
        }
        if self.scale {
            let s = &self.scale_workload;
            title += &format!(", {}s scale runs at {} sessions/s", s.duration_s, s.rate);
        }
        if self.store {
            title += &format!(", {}s store runs at {} sessions/s", w.duration_s, w.rate);
        }
        if self.files {
            let f = &self.files_workload;
            title += &format!(", {}s file runs at {} sessions/s", f.duration_s, f.rate);
        }
        if self.chat {
            title += &format!(
                ", {}s chat runs of {} users in rooms of {}",
                self.chat_workload.duration_s, self.chat_rooms.users, self.chat_rooms.room_size
            );
        }
        if let (true, Some(sk)) = (self.skew, self.skew_workload.skewed) {
            title += &format!(
                ", {}s skew runs of {} users ({})",
                self.skew_workload.duration_s, sk.users, sk.skew
            );
        }
        title + ")"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(docker: bool) -> Matrix {
        let w = Workload {
            rate: 30,
            adds: 3,
            think_ms: 100,
            duration_s: 30,
            sources: None,
            skewed: None,
        };
        Matrix {
            docker,
            kills: true,
            scale: true,
            store: !docker,
            workload: w,
            scale_workload: Workload {
                rate: 10,
                adds: 20,
                think_ms: 500,
                duration_s: 40,
                sources: None,
                skewed: None,
            },
            scale_at_s: 12,
            scale_drain_s: 15,
            skew: false,
            skew_workload: Workload {
                rate: 0,
                adds: 3,
                think_ms: 20,
                duration_s: 20,
                sources: None,
                skewed: Some(Skewed {
                    users: 40,
                    skew: "zipf:1.1",
                    sources_skew: Some("zipf:1"),
                }),
            },
            skew_factor: BalanceFactor::new(125).expect("a factor"),
            chat: false,
            chat_workload: Workload {
                rate: 0,
                adds: 0,
                think_ms: 100,
                duration_s: 15,
                sources: None,
                skewed: None,
            },
            chat_rooms: ChatRooms {
                users: 24,
                room_size: 4,
            },
            files: false,
            files_workload: Workload {
                rate: 10,
                adds: 2,
                think_ms: 50,
                duration_s: 15,
                sources: None,
                skewed: None,
            },
        }
    }

    #[test]
    fn the_chat_runs_kill_and_shrink_each_design_under_open_sockets() {
        let mut m = matrix(false);
        (m.kills, m.scale, m.store, m.chat) = (false, false, false, true);
        let runs = m.runs();
        let dirs: Vec<&str> = runs.iter().map(|r| r.dir.as_str()).collect();
        assert_eq!(
            dirs,
            [
                "chat-stateful-cookie-kill",
                "chat-stateful-cookie-3-to-2",
                "chat-stateless-round-robin-kill",
                "chat-stateless-round-robin-3-to-2",
                "chat-externalized-round-robin-kill",
                "chat-externalized-round-robin-3-to-2",
            ]
        );
        let flags = runs[0].run_flags(1, 2, "lab", "o").join(" ");
        for part in [
            "--workflow chat --model closed --users 24 --room-size 4",
            "--think-ms 100 --duration 15",
            "--kill stateful-2@5 --restart @10",
        ] {
            assert!(flags.contains(part), "{part} in {flags}");
        }
        assert!(
            !flags.contains("--rate") && !flags.contains("--adds"),
            "{flags}"
        );
        assert!(m
            .title()
            .ends_with(", 15s chat runs of 24 users in rooms of 4)"));
    }

    #[test]
    fn the_file_runs_kill_shrink_and_take_the_object_store_away() {
        let mut m = matrix(false);
        (m.kills, m.scale, m.store, m.files) = (false, false, false, true);
        let runs = m.runs();
        let dirs: Vec<&str> = runs.iter().map(|r| r.dir.as_str()).collect();
        assert_eq!(
            dirs,
            [
                "files-stateful-cookie-kill",
                "files-stateful-ip-hash-whole",
                "files-stateful-ip-hash-3-to-2",
                "files-stateless-round-robin-kill",
                "files-externalized-round-robin-kill",
                "files-externalized-round-robin-s3-down",
            ]
        );
        assert!(runs.iter().all(|r| r.avatar));
        let s3 = runs[5].run_flags(1, 2, "lab", "o").join(" ");
        for part in [
            "--rate 10 --adds 2 --think-ms 50 --duration 15 --sources 250",
            "--kill s3@5 --restart @10",
            "--avatar",
        ] {
            assert!(s3.contains(part), "{part} in {s3}");
        }
        let shrink = runs[2].run_flags(1, 2, "lab", "o").join(" ");
        assert!(shrink.contains("--scale stateful=2@7:now"), "{shrink}");
        assert!(!shrink.contains("--kill"), "{shrink}");
        m.docker = true;
        let docker: Vec<String> = m.runs().into_iter().map(|r| r.dir).collect();
        assert_eq!(docker.len(), 5, "{docker:?}");
        assert_eq!(docker[1], "files-stateful-cookie-3-to-2");
        assert!(m.title().ends_with(", 15s file runs at 10 sessions/s)"));
    }

    #[test]
    fn the_matrix_is_the_documented_one() {
        let runs = matrix(false).runs();
        let dirs: Vec<&str> = runs.iter().map(|r| r.dir.as_str()).collect();
        assert_eq!(
            dirs,
            [
                "stateful-cookie",
                "stateful-round-robin",
                "stateless-round-robin",
                "externalized-round-robin",
                "stateful-cookie-3-to-4",
                "stateful-cookie-4-to-3-drain",
                "stateful-cookie-4-to-3-now",
                "stateful-ip-hash-3-to-4",
                "stateful-ip-hash-4-to-3-drain",
                "stateful-ip-hash-4-to-3-now",
                "stateful-ip-modulo-3-to-4",
                "stateful-ip-modulo-4-to-3-drain",
                "stateful-ip-modulo-4-to-3-now",
                "stateless-round-robin-3-to-4",
                "externalized-round-robin-3-to-4",
                "store-single",
                "store-sentinel",
                "store-sentinel-wait1",
                "store-cluster",
            ]
        );
        assert_eq!(runs[0].kill, Some(("stateful-2".into(), 10)));
        assert_eq!(runs[1].kill, None);
        assert!(runs[..4].iter().all(|r| r.memory && r.label.is_none()));
        assert_eq!(runs[5].label.as_deref(), Some("stateful/cookie 4->3 drain"));
        assert_eq!(runs[5].scale.map(|s| s.shrink), Some(Shrink::Drain(15)));
        assert_eq!(runs[7].workload.sources, Some(250));
        assert_eq!(
            runs[18].store.as_ref().map(|s| s.up.clone()),
            Some(vec!["--redis", "cluster"])
        );
        assert_eq!(runs[18].kill, Some(("redis-primary".into(), 10)));
    }

    #[test]
    fn docker_leaves_out_what_its_nat_hides() {
        let runs = matrix(true).runs();
        assert_eq!(runs.len(), 4 + 3 + 2);
        assert!(runs.iter().all(|r| r.strategy != Strategy::IpHash));
        assert!(runs
            .iter()
            .filter(|r| r.scale.is_some())
            .all(|r| r.workload.sources == Some(1)));
    }

    #[test]
    fn a_run_becomes_the_flags_of_statelab_load_run() {
        let runs = matrix(false).runs();
        let flags = runs[5].run_flags(8080, 8081, "scripts/lab", "out/x");
        let text = flags.join(" ");
        assert!(
            text.starts_with(
                "--service stateful --strategy cookie --label stateful/cookie 4->3 drain"
            ),
            "{text}"
        );
        for part in [
            "--target http://127.0.0.1:8080/stateful",
            "--admin http://127.0.0.1:8081",
            "--rate 10 --adds 20 --think-ms 500 --duration 40 --sources 250",
            "--scale stateful=3@12:drain=15",
            "--out out/x",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        let kill = runs[0].run_flags(1, 2, "lab", "o").join(" ");
        assert!(
            kill.contains("--kill stateful-2@10") && kill.contains("--memory"),
            "{kill}"
        );
    }

    #[test]
    fn the_title_names_what_ran() {
        assert_eq!(
            matrix(false).title(),
            "statelab: stateful vs stateless, measured (native lab, 30s kill runs at 30 sessions/s, \
             40s scale runs at 10 sessions/s, 30s store runs at 30 sessions/s)"
        );
    }

    #[test]
    fn the_skew_runs_pair_each_sticky_strategy_with_bounded_loads() {
        let mut m = matrix(false);
        (m.kills, m.scale, m.store, m.skew) = (false, false, false, true);
        let runs = m.runs();
        let dirs: Vec<&str> = runs.iter().map(|r| r.dir.as_str()).collect();
        assert_eq!(
            dirs,
            [
                "skew-stateful-cookie",
                "skew-stateful-cookie-bf125",
                "skew-stateful-ip-hash",
                "skew-stateful-ip-hash-bf125",
                "skew-externalized-ip-hash",
                "skew-externalized-ip-hash-bf125",
                "skew-stateless-round-robin",
                "skew-stateless-least-requests",
                "skew-externalized-round-robin",
                "skew-externalized-least-requests",
            ]
        );
        assert!(runs
            .iter()
            .all(|r| r.scale.map(|s| (s.from, s.to, s.at_s)) == Some((3, 4, 10))));
        let flags = runs[3].run_flags(1, 2, "lab", "o").join(" ");
        for part in [
            "--model closed --users 40 --skew zipf:1.1 --sources-skew zipf:1",
            "--think-ms 20 --duration 20 --sources 40",
            "--scale stateful=4@10",
            "--cpu",
        ] {
            assert!(flags.contains(part), "{part} in {flags}");
        }
        assert!(!flags.contains("--rate"), "{flags}");
        // Cookie places by its cookie, not the address: the users are not packed behind one.
        let cookie = runs[0].run_flags(1, 2, "lab", "o").join(" ");
        assert!(!cookie.contains("--sources-skew"), "{cookie}");
        assert_eq!(runs[1].balance_factor.map(|f| f.percent()), Some(125));
        assert_eq!(runs[0].balance_factor, None);
        m.docker = true;
        let docker: Vec<String> = m.runs().into_iter().map(|r| r.dir).collect();
        assert_eq!(
            docker,
            [
                "skew-stateful-cookie",
                "skew-stateful-cookie-bf125",
                "skew-stateless-round-robin",
                "skew-stateless-least-requests",
                "skew-externalized-round-robin",
                "skew-externalized-least-requests",
            ]
        );
        assert!(
            m.title()
                .ends_with(", 20s skew runs of 40 users (zipf:1.1))"),
            "{}",
            m.title()
        );
    }
}
