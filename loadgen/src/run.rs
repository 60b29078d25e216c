//! One run: start the virtual users under the chosen workload model, carry out the scheduled
//! fault, show progress, stop at the deadline (or Ctrl-C), and turn the record into a
//! [`RunReport`].

use std::io::IsTerminal;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;

use crate::client::Target;
use crate::config::{ModelKind, Routing, WorkflowKind};
use crate::fault::{Fault, FaultStep, Lab};
use crate::report::{Event, Failover, PercentileRow, RunReport};
use crate::stats::{self, percentile_ms, Recorder};
use crate::workflow::{SessionEnd, User, Workflow};

use crate::stats::LATE_THRESHOLD;

/// How sessions (or raw requests) are started.
#[derive(Debug, Clone)]
pub enum Model {
    /// New sessions arrive at `rate` per second whatever the answers do; at most `max_sessions`
    /// run at once (arrivals beyond are dropped and counted).
    Open { rate: f64, max_sessions: u64 },
    /// `users` users each run sessions back to back.
    Closed { users: u64 },
}

impl Model {
    pub fn kind(&self) -> ModelKind {
        match self {
            Model::Open { .. } => ModelKind::Open,
            Model::Closed { .. } => ModelKind::Closed,
        }
    }
}

/// What each user does.
#[derive(Debug, Clone)]
pub enum Work {
    Shop(Workflow),
    /// GET `path` repeatedly: the raw request rate, for comparing the generator with wrk.
    Raw {
        path: String,
    },
}

impl Work {
    pub fn kind(&self) -> WorkflowKind {
        match self {
            Work::Shop(_) => WorkflowKind::Shop,
            Work::Raw { .. } => WorkflowKind::Raw,
        }
    }
}

/// A run, fully specified (the CLI builds it).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub service: String,
    pub strategy: Option<Routing>,
    pub label: String,
    pub target_url: String,
    pub target: Target,
    pub model: Model,
    pub work: Work,
    pub duration: Duration,
    pub timeout: Duration,
    pub sources: Vec<IpAddr>,
    pub fault: Option<Fault>,
    pub lab: Lab,
    pub sample_memory: bool,
    pub progress: bool,
}

#[derive(Debug, Default)]
struct Counters {
    sessions_started: AtomicU64,
    sessions_completed: AtomicU64,
    starts_late: AtomicU64,
    starts_dropped: AtomicU64,
    max_lag_us: AtomicU64,
    active: AtomicU64,
}

/// Runs the load and returns its report. Ctrl-C ends the run early; the report then covers the
/// whole seconds that ran and says `interrupted`.
pub async fn run(cfg: RunConfig) -> anyhow::Result<RunReport> {
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
    match cfg.model.clone() {
        Model::Closed { users } => {
            for id in 0..users {
                let user = new_user(&cfg, id, &recorder, deadline);
                let work = cfg.work.clone();
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
    let fault_task = cfg.fault.clone().map(|fault| {
        tokio::spawn(fault.run(cfg.lab.clone(), start, events.clone(), fault_stopped))
    });

    let interrupted = tokio::select! {
        _ = wait_all(&mut tasks, deadline, cfg.timeout, &recorder, cfg.progress, cfg.duration) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    tasks.abort_all();
    if cfg.progress {
        eprintln!();
    }
    if let Some(task) = fault_task {
        let _ = stop_fault.send(interrupted);
        let _ = task.await;
    }
    let elapsed = if interrupted {
        start.elapsed().min(cfg.duration)
    } else {
        cfg.duration
    };
    // Only whole seconds go into the series (a part second would look like a throughput drop).
    let seconds = (elapsed.as_secs() as usize).max(1);
    let measured = recorder.finish(seconds, !interrupted);
    let (steps_late, max_step_lag_ms) = recorder.step_lag();

    let memory_bytes = if cfg.sample_memory {
        cfg.lab.memory(&cfg.service).await
    } else {
        Default::default()
    };
    let events = std::mem::take(&mut *events.lock().unwrap_or_else(|e| e.into_inner()));

    let requests: u64 = measured.series.iter().map(|s| s.requests).sum();
    let ok: u64 = measured.series.iter().map(|s| s.ok).sum();
    let failed: u64 = measured.series.iter().map(|s| s.failed).sum();
    let mut errors = stats::ErrorCounts::default();
    let mut per_replica = std::collections::BTreeMap::new();
    for s in &measured.series {
        errors.merge(&s.errors);
        for (name, n) in &s.per_replica {
            *per_replica.entry(name.clone()).or_insert(0) += n;
        }
    }
    let measured_s = seconds as f64;
    let failover = cfg
        .fault
        .as_ref()
        .and_then(|fault| failover(fault, &events, &measured));
    let percentiles = [50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0]
        .into_iter()
        .map(|p| PercentileRow {
            percentile: p,
            latency_ms: percentile_ms(&measured.latency, p),
            service_ms: percentile_ms(&measured.service, p),
        })
        .collect();

    let (rate, users) = match cfg.model {
        Model::Open { rate, .. } => (Some(rate), None),
        Model::Closed { users } => (None, Some(users)),
    };
    let (adds, think_ms) = match &cfg.work {
        Work::Shop(w) => (Some(w.adds), Some(w.think.as_millis() as u64)),
        Work::Raw { .. } => (None, None),
    };
    Ok(RunReport {
        service: cfg.service.clone(),
        strategy: cfg.strategy,
        label: cfg.label.clone(),
        target: cfg.target_url.clone(),
        workflow: cfg.work.kind(),
        model: cfg.model.kind(),
        rate,
        users,
        adds,
        think_ms,
        sources: cfg.sources.len().max(1) as u64,
        duration_s: measured_s,
        started_unix_ms,
        interrupted,
        killed: cfg.fault.as_ref().map(|f| f.replica.clone()),
        requests,
        ok_requests: ok,
        failed_requests: failed,
        errors,
        session_losses: measured.loss_unauthorized + measured.loss_cart,
        losses_unauthorized: measured.loss_unauthorized,
        losses_cart_mismatch: measured.loss_cart,
        sessions_started: counters.sessions_started.load(Ordering::Relaxed),
        sessions_completed: counters.sessions_completed.load(Ordering::Relaxed),
        starts_late: counters.starts_late.load(Ordering::Relaxed),
        starts_dropped: counters.starts_dropped.load(Ordering::Relaxed),
        max_start_lag_ms: counters.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
        steps_late,
        max_step_lag_ms,
        throughput_rps: ok as f64 / measured_s,
        p50_ms: percentile_ms(&measured.latency, 50.0),
        p90_ms: percentile_ms(&measured.latency, 90.0),
        p99_ms: percentile_ms(&measured.latency, 99.0),
        p999_ms: percentile_ms(&measured.latency, 99.9),
        max_ms: percentile_ms(&measured.latency, 100.0),
        service_p50_ms: percentile_ms(&measured.service, 50.0),
        service_p99_ms: percentile_ms(&measured.service, 99.0),
        percentiles,
        per_replica,
        memory_bytes,
        failover,
        events,
        timeline: measured.series,
    })
}

/// Failover figures from the kill event (its actual time) and the per-second record.
fn failover(fault: &Fault, events: &[Event], m: &stats::Measured) -> Option<Failover> {
    // Without a kill that happened there is no failover to describe.
    let kill = events.iter().find(|e| e.what == FaultStep::Kill && e.ok)?;
    let restart_at_s = events
        .iter()
        .find(|e| e.what == FaultStep::Restart && e.ok)
        .map(|e| e.at_s);
    let recovery = stats::recovery(&m.series, kill.at_s);
    let kill_second = (kill.at_s.floor() as usize).min(m.series.len());
    // From the kill's second until the run was back in its band (failures included in the
    // band), or to the end if it never was or there was no band.
    let until = recovery
        .as_ref()
        .and_then(|r| r.recovered_at_second)
        .map_or(m.series.len(), |at| at as usize)
        .max(kill_second);
    let after_kill = &m.series[kill_second..];
    let failed_during_failover = m.series[kill_second..until].iter().map(|s| s.failed).sum();
    let last_answer_after_kill_s = m
        .last_seen
        .get(&fault.replica)
        .map_or(0.0, |seen| (seen - kill.at_s).max(0.0));
    Some(Failover {
        replica: fault.replica.clone(),
        kill_at_s: kill.at_s,
        kill_took_s: kill.took_s,
        restart_at_s,
        last_answer_after_kill_s,
        failed_during_failover,
        sessions_lost_after_kill: after_kill.iter().map(|s| s.session_losses).sum(),
        recovery,
    })
}

fn new_user(cfg: &RunConfig, id: u64, recorder: &Arc<Recorder>, deadline: Instant) -> User {
    let source = if cfg.sources.is_empty() {
        None
    } else {
        Some(cfg.sources[(id as usize) % cfg.sources.len()])
    };
    User::new(
        id,
        cfg.target.clone(),
        source,
        cfg.timeout,
        recorder.clone(),
        deadline,
    )
}

async fn closed_user(mut user: User, work: Work, counters: Arc<Counters>, deadline: Instant) {
    match work {
        Work::Raw { path } => user.raw_loop(&path).await,
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

/// Whether to draw the progress line: only for a person watching a terminal.
pub fn progress_wanted() -> bool {
    std::io::stderr().is_terminal()
}
