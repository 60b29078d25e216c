//! What a service binary's `main` does, once for all three: set up tracing, build the runtime
//! and the store, bind, and serve until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::api::{App, Settings};
use crate::config::{CommonArgs, LogFormat};
use crate::metrics::Metrics;
use crate::session::SessionStore;

/// What a service keeps besides its sessions, each built inside the runtime (so it may spawn
/// tasks): its file store, for the replica's name, and its chat rooms.
#[derive(Debug)]
pub struct Beside<G, R> {
    pub files: G,
    pub rooms: R,
}

/// Runs a service whose store `make_store` builds (inside the runtime, so it may spawn tasks)
/// and whose file store and chat rooms `beside` builds.
pub fn launch<S, F, G, R>(
    common: CommonArgs,
    beside: Beside<G, R>,
    make_store: F,
) -> anyhow::Result<()>
where
    S: SessionStore,
    F: FnOnce(&Metrics) -> anyhow::Result<S>,
    G: FnOnce(&str) -> anyhow::Result<crate::files::Files>,
    R: FnOnce() -> anyhow::Result<crate::chat::Rooms>,
{
    init_tracing(common.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    runtime.block_on(async move {
        let replica = common
            .replica
            .clone()
            .unwrap_or_else(|| S::DESIGN.as_str().to_owned());
        let metrics = Metrics::new(S::DESIGN.as_str(), &replica).context("registering metrics")?;
        let store = make_store(&metrics)?;
        let settings = Settings {
            replica: replica.clone(),
            body_limit: usize::try_from(common.body_limit).unwrap_or(usize::MAX),
            session_ttl_secs: common.session_ttl,
            work: crate::work::Work::calibrated(common.work_us, common.work_dist),
        };
        if settings.work.us > 0 {
            tracing::info!(
                work_us = settings.work.us,
                steps = settings.work.steps,
                dist = %settings.work.dist,
                "CPU work per API request"
            );
        }
        let files = (beside.files)(&replica)?;
        tracing::info!(?files, "avatars");
        let rooms = (beside.rooms)()?;
        tracing::info!(rooms = rooms.kind(), "chat");
        let app = Arc::new(
            App::new(store, settings, metrics)?
                .with_files(files)
                .with_rooms(rooms),
        );
        let listener = tokio::net::TcpListener::bind(common.listen)
            .await
            .with_context(|| format!("binding {}", common.listen))?;
        let local = listener.local_addr().context("reading the bound address")?;
        let shutdown = shutdown_signal()?;
        tracing::info!(design = %S::DESIGN, %replica, listen = %local, "serving");
        let grace = Duration::from_secs(common.shutdown_grace);
        crate::server::run(listener, app, shutdown, grace).await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on SIGTERM (what Docker and `scripts/lab` send) or Ctrl-C (SIGINT).
///
/// The handlers are installed here, when this is called — before the "serving" line is logged —
/// not when the future is first polled: a supervisor that sends SIGTERM as soon as it sees the
/// service up must get a graceful stop, not the default action of the signal.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
