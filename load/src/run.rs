//! One run: start the virtual users under the chosen workload model, carry out the scheduled
//! fault, show progress, stop at the deadline (or Ctrl-C), and hand what was recorded to
//! [`RunReport::build`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::task::JoinSet;

use crate::config::{Model, RunConfig, Work};
use crate::fault::Event;
use crate::report::{ProxyViews, RunOutcome, RunReport, SessionCounts};
use crate::stats::{Recorder, LATE_THRESHOLD};
use crate::workflow::{SessionEnd, User};

/// The generator's own counters, shared by the tasks that start sessions.
#[derive(Debug, Default)]
struct Counters {
    sessions_started: AtomicU64,
    sessions_completed: AtomicU64,
    starts_late: AtomicU64,
    starts_dropped: AtomicU64,
    max_lag_us: AtomicU64,
    active: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SessionCounts {
        SessionCounts {
            started: self.sessions_started.load(Ordering::Relaxed),
            completed: self.sessions_completed.load(Ordering::Relaxed),
            starts_late: self.starts_late.load(Ordering::Relaxed),
            starts_dropped: self.starts_dropped.load(Ordering::Relaxed),
            max_start_lag_ms: self.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// Runs the load and returns its report. Ctrl-C ends the run early; the report then covers the
/// whole seconds that ran and says `interrupted`.
pub async fn run(cfg: RunConfig) -> anyhow::Result<RunReport> {
    // The pool as the proxy sees it, before the clock starts and after the run.
    let pool_view = || async {
        match &cfg.admin {
            Some(api) => api.pool(cfg.service.as_str()).await,
            None => None,
        }
    };
    let before = pool_view().await;
    let cpu_before = match cfg.sample_cpu {
        true => Some(
            crate::capacity::read_cpu(&cfg.lab)
                .await
                .context("--cpu: the lab's CPU reading")?,
        ),
        false => None,
    };
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let recorder = Arc::new(Recorder::new(
        start,
        cfg.fault
            .as_ref()
            .and_then(|f| f.restart_at)
            .unwrap_or(cfg.duration),
    ));
    let counters = Arc::new(Counters::default());
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();

    let mut tasks = JoinSet::new();
    let chat_log = Arc::new(crate::chat::ChatLog::default());
    match cfg.model.clone() {
        Model::Closed { users } if matches!(cfg.work, Work::Chat(_)) => {
            if let Work::Chat(flow) = cfg.work {
                for id in 0..users {
                    tasks.spawn(crate::chat::chat_user(
                        id,
                        cfg.target.clone(),
                        source_of(&cfg, id),
                        cfg.timeout,
                        flow,
                        Arc::clone(&chat_log),
                        deadline,
                    ));
                }
            }
        }
        Model::Closed { users } => {
            if cfg.skew.is_some() {
                recorder.set_heavy(crate::skew::heavy_users(users));
            }
            for id in 0..users {
                let mut user = new_user(&cfg, id, &recorder, deadline);
                if cfg.skew.is_some() {
                    user = user.returning();
                }
                let work = match (cfg.work.clone(), cfg.skew) {
                    // Heavy users think less: the k-th user thinks k^S times as long.
                    (Work::Shop(mut flow), Some(z)) => {
                        flow.think = flow.think.mul_f64(z.think_factor(id));
                        Work::Shop(flow)
                    }
                    (work, _) => work,
                };
                let counters = counters.clone();
                tasks.spawn(closed_user(user, work, counters, deadline));
            }
        }
        Model::Open { rate, max_sessions } => {
            tasks.spawn(open_arrivals(
                cfg.clone(),
                rate,
                max_sessions,
                recorder.clone(),
                counters.clone(),
                start,
                deadline,
            ));
        }
    }
    // The fault runs apart from the users: a lab command under way is never cut off (a replica
    // half started would outlive the run), and on Ctrl-C no further step is started.
    let (stop_fault, fault_stopped) = tokio::sync::watch::channel(false);
    let scale_task = (!cfg.scales.is_empty()).then(|| {
        tokio::spawn(crate::fault::run_scales(
            cfg.scales.clone(),
            cfg.lab.clone(),
            start,
            events.clone(),
            fault_stopped.clone(),
            recorder.clone(),
        ))
    });
    let fault_task = cfg.fault.clone().map(|fault| {
        tokio::spawn(fault.run(
            cfg.lab.clone(),
            start,
            deadline,
            events.clone(),
            fault_stopped,
            recorder.clone(),
        ))
    });

    let interrupted = tokio::select! {
        _ = wait_all(&mut tasks, deadline, cfg.timeout, &recorder, cfg.progress, cfg.duration) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    tasks.abort_all();
    if cfg.progress {
        eprintln!();
    }
    let _ = stop_fault.send(interrupted);
    let primaries = match fault_task {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };
    if let Some(task) = scale_task {
        let _ = task.await;
    }
    let elapsed = if interrupted {
        start.elapsed().min(cfg.duration)
    } else {
        cfg.duration
    };
    // Every avatar stored, read back once the faults and scale events are over.
    let files_after = match &cfg.work {
        Work::Shop(flow) if flow.avatar && !interrupted => {
            Some(crate::files::read_back(&cfg, flow.run_tag, recorder.take_stored()).await)
        }
        _ => None,
    };
    // Only whole seconds go into the series (a part second would look like a throughput drop).
    let seconds = (elapsed.as_secs() as usize).max(1);
    let measured = recorder.finish(seconds, !interrupted);

    let cpu = match &cpu_before {
        Some(before) => {
            let after = crate::capacity::read_cpu(&cfg.lab)
                .await
                .context("--cpu: the lab's CPU reading")?;
            crate::capacity::cpu_between(before, &after).0
        }
        None => Vec::new(),
    };
    let memory_bytes = if cfg.sample_memory {
        cfg.lab.memory(cfg.service).await
    } else {
        Default::default()
    };
    let events = std::mem::take(&mut *events.lock().unwrap_or_else(|e| e.into_inner()));
    let outcome = RunOutcome {
        started_unix_ms,
        interrupted,
        measured,
        sessions: counters.snapshot(),
        memory_bytes,
        events,
        primaries,
        proxy: ProxyViews {
            before,
            after: pool_view().await,
        },
        cpu,
        files_after,
        chat: match (&cfg.work, &cfg.model) {
            (Work::Chat(flow), Model::Closed { users }) => {
                Some(chat_log.report(flow, *users, start + elapsed))
            }
            _ => None,
        },
    };
    Ok(RunReport::build(&cfg, outcome))
}

/// The source address user `id` sends from; the system's choice when the run names none.
pub(crate) fn source_of(cfg: &RunConfig, id: u64) -> Option<std::net::IpAddr> {
    if cfg.sources.is_empty() {
        None
    } else if cfg.source_bins.is_empty() {
        Some(cfg.sources[(id as usize) % cfg.sources.len()])
    } else {
        let bin = cfg.source_bins[(id as usize) % cfg.source_bins.len()];
        cfg.sources.get(bin).copied()
    }
}

fn new_user(cfg: &RunConfig, id: u64, recorder: &Arc<Recorder>, deadline: Instant) -> User {
    User::new(
        id,
        cfg.target.clone(),
        source_of(cfg, id),
        cfg.timeout,
        recorder.clone(),
        deadline,
    )
}

async fn closed_user(mut user: User, work: Work, counters: Arc<Counters>, deadline: Instant) {
    match work {
        Work::Raw { path } => user.raw_loop(&path).await,
        // Chat users run apart (`crate::chat::chat_user`); the configuration keeps them closed.
        Work::Chat(_) => {}
        Work::Shop(flow) => loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            counters.sessions_started.fetch_add(1, Ordering::Relaxed);
            match user.shop(now, &flow).await {
                SessionEnd::Completed => {
                    counters.sessions_completed.fetch_add(1, Ordering::Relaxed);
                }
                SessionEnd::Cut => return,
                // Pause before the next try so a dead target is not hammered in a tight loop.
                SessionEnd::Lost | SessionEnd::Failed => {
                    tokio::time::sleep(flow.think.max(Duration::from_millis(10))).await;
                }
            }
        },
    }
}

/// The open model's clock: arrival `i` is due at `start + i / rate`, whatever the answers do.
async fn open_arrivals(
    cfg: RunConfig,
    rate: f64,
    max_sessions: u64,
    recorder: Arc<Recorder>,
    counters: Arc<Counters>,
    start: Instant,
    deadline: Instant,
) {
    let mut sessions = JoinSet::new();
    let interval = Duration::from_secs_f64(1.0 / rate);
    for i in 0u64.. {
        let due = start + interval.mul_f64(i as f64);
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        // Reap finished sessions so the set does not grow with the run.
        while sessions.try_join_next().is_some() {}
        let lag = Instant::now().saturating_duration_since(due);
        counters
            .max_lag_us
            .fetch_max(lag.as_micros() as u64, Ordering::Relaxed);
        if lag > LATE_THRESHOLD {
            counters.starts_late.fetch_add(1, Ordering::Relaxed);
        }
        if counters.active.load(Ordering::Relaxed) >= max_sessions {
            counters.starts_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counters.active.fetch_add(1, Ordering::Relaxed);
        counters.sessions_started.fetch_add(1, Ordering::Relaxed);
        let mut user = new_user(&cfg, i, &recorder, deadline);
        let work = cfg.work.clone();
        let counters = counters.clone();
        sessions.spawn(async move {
            // The first request is measured from `due`: a late start shows in its latency.
            let end = match &work {
                Work::Shop(flow) => user.shop(due, flow).await,
                Work::Raw { path } => {
                    user.raw_once(due, path).await;
                    SessionEnd::Completed
                }
                // The configuration refuses chat with the open model.
                Work::Chat(_) => SessionEnd::Completed,
            };
            if end == SessionEnd::Completed {
                counters.sessions_completed.fetch_add(1, Ordering::Relaxed);
            }
            counters.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
    while sessions.join_next().await.is_some() {}
}

/// Waits for every task, printing a progress line once a second when asked. Tasks stop sending at
/// the deadline; the ones still waiting on an answer get at most the request timeout after it.
async fn wait_all(
    tasks: &mut JoinSet<()>,
    deadline: Instant,
    timeout: Duration,
    recorder: &Recorder,
    progress: bool,
    duration: Duration,
) {
    let hard_stop = tokio::time::Instant::from_std(deadline + timeout);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return },
            _ = tokio::time::sleep_until(hard_stop) => return,
            _ = tick.tick(), if progress => {
                let now = Instant::now();
                let p = recorder.snapshot(now);
                let t = now.saturating_duration_since(recorder.start()).min(duration);
                eprint!(
                    "\r  {:>4}/{} s  ok/s {:>7}  p99 {:>8.2} ms  requests {:>9}  failed {:>6}  lost {:>5} ",
                    t.as_secs(), duration.as_secs(), p.last_second_ok, p.last_second_p99_ms,
                    p.requests, p.failed, p.losses
                );
            }
        }
    }
}

/// The runtime for a run: `threads` worker threads (default: one per core). One thread is a
/// current-thread runtime, without the multi-thread scheduler's cross-thread bookkeeping (the
/// generator on one core, as scripts/bench-load runs it).
pub fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all();
    if let Some(n) = threads.filter(|n| *n > 1) {
        builder.worker_threads(n);
    }
    builder.build()
}
