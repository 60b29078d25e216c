//! The avatars read back after a run (`--avatar`): every file the service said it stored, asked
//! for once more by name, once the run's faults and scale events are over. Each read comes from
//! its owner's source address with no cookie, as a visitor's does, so what address-based routing
//! would find, it finds. A file that a removed replica took with its disk shows here even when no
//! visitor asked for it during the run.

use std::sync::Arc;

use http::{Method, StatusCode};
use tokio::task::JoinSet;

use crate::client::Client;
use crate::config::RunConfig;
use crate::stats::StoredFile;
use crate::workflow::{avatar_bytes, username};

/// Reads in flight at once.
const IN_FLIGHT: usize = 16;

/// What the read-back found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AfterRun {
    /// Avatars asked for: every one stored over the run.
    pub asked: u64,
    /// Answered 404, or with other bytes than were stored.
    pub lost: u64,
    /// Answered 503 `files_unavailable`.
    pub unavailable: u64,
    /// No answer, or another status.
    pub failed: u64,
}

impl AfterRun {
    /// The share of the stored avatars found lost, 0 when none was stored.
    pub fn lost_share(&self) -> f64 {
        if self.asked == 0 {
            0.0
        } else {
            self.lost as f64 / self.asked as f64
        }
    }
}

/// What one read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Whole,
    Lost,
    Unavailable,
    Failed,
}

fn tally(found: Found, result: &mut AfterRun) {
    match found {
        Found::Whole => {}
        Found::Lost => result.lost += 1,
        Found::Unavailable => result.unavailable += 1,
        Found::Failed => result.failed += 1,
    }
}

/// Reads every stored avatar back, `IN_FLIGHT` at a time.
pub async fn read_back(cfg: &RunConfig, run_tag: u64, stored: Vec<StoredFile>) -> AfterRun {
    let cfg = Arc::new(cfg.clone());
    let mut result = AfterRun::default();
    let mut reads = JoinSet::new();
    for file in stored {
        result.asked += 1;
        if reads.len() >= IN_FLIGHT {
            if let Some(done) = reads.join_next().await {
                tally(done.unwrap_or(Found::Failed), &mut result);
            }
        }
        let cfg = cfg.clone();
        reads.spawn(async move { read_one(&cfg, run_tag, file).await });
    }
    while let Some(done) = reads.join_next().await {
        tally(done.unwrap_or(Found::Failed), &mut result);
    }
    result
}

async fn read_one(cfg: &RunConfig, run_tag: u64, file: StoredFile) -> Found {
    let mut visitor = Client::new(
        cfg.target.clone(),
        crate::run::source_of(cfg, file.user),
        cfg.timeout,
    );
    let path = format!("/avatar/{}", username(file.user, file.session));
    let answer = visitor.send(Method::GET, &path, None).await.result;
    match answer {
        Ok(a)
            if a.status == StatusCode::OK
                && a.body == avatar_bytes(run_tag, file.user, file.session) =>
        {
            Found::Whole
        }
        Ok(a) if a.status == StatusCode::OK || a.status == StatusCode::NOT_FOUND => Found::Lost,
        Ok(a) if a.status == StatusCode::SERVICE_UNAVAILABLE => Found::Unavailable,
        _ => Found::Failed,
    }
}
