//! `GET /health?detail=1`: what a replica reports of itself to the proxy's health checker.

use serde::{Deserialize, Serialize};

use crate::Design;

/// The whole answer of a statelab service's `GET /health?detail=1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthDetail {
    /// `ok`: a store that cannot serve answers `503` with an error body instead.
    pub status: String,
    /// The service's design (the field's name on the wire is `kind`).
    #[serde(rename = "kind")]
    pub design: Design,
    pub replica: String,
    #[serde(flatten)]
    pub reported: Reported,
}

/// The figures part of [`HealthDetail`]: what the proxy's health checker reads from any
/// replica's answer. Every field is optional, so a replica that is not a statelab service reports
/// none and is still checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    #[serde(flatten)]
    pub store: StoreFigures,
    /// The replica's resident memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// CPU time the replica's process has used since it started (user + system), in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    /// Time since the replica started, in ms: two reports' `cpu_ms` over their `uptime_ms` give
    /// the cores it used between them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    /// The CPU budget its control group enforces, in thousandths of a core; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_budget_millis: Option<u32>,
}

/// A session store's figures; each design fills in the ones it has, each costing O(1) to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreFigures {
    /// Sessions this process holds in memory (stateful).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_held: Option<u64>,
    /// Keys in the shared store's database (externalized): every replica reports the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_sessions: Option<u64>,
    /// Bytes of the tokens clients presented since start, and how many (stateless): the proxy
    /// divides the growth of one by the other's for the mean token size of an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_bytes_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_total: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_flat_and_reads_back_as_its_figures() {
        let detail = HealthDetail {
            status: "ok".into(),
            design: Design::Stateful,
            replica: "stateful-1".into(),
            reported: Reported {
                store: StoreFigures {
                    sessions_held: Some(7),
                    ..StoreFigures::default()
                },
                rss_bytes: Some(4096),
                cpu_ms: Some(1500),
                uptime_ms: Some(60_000),
                cpu_budget_millis: Some(200),
            },
        };
        let json = serde_json::to_value(&detail).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({"status": "ok", "kind": "stateful", "replica": "stateful-1",
                "sessions_held": 7, "rss_bytes": 4096,
                "cpu_ms": 1500, "uptime_ms": 60000, "cpu_budget_millis": 200})
        );
        let figures: Reported = serde_json::from_value(json.clone()).expect("figures");
        assert_eq!(figures, detail.reported);
        let back: HealthDetail = serde_json::from_value(json).expect("whole");
        assert_eq!(back, detail);
    }

    #[test]
    fn a_foreign_answer_reports_nothing() {
        let figures: Reported =
            serde_json::from_str(r#"{"status":"UP","version":3}"#).expect("lenient");
        assert_eq!(figures, Reported::default());
    }
}
