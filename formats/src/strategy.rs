//! The names of the proxy's routing strategies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a pool picks the replica for a request. The names are what the configuration file, the
/// admin API (`PUT /admin/pools/{pool}/strategy`) and the status view use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Sticky sessions through an affinity cookie set by the proxy.
    Cookie,
    /// Consistent hashing on the client address.
    IpHash,
    /// The client address's hash modulo the number of replicas: the naive scheme, kept to show
    /// what consistent hashing avoids (a change of pool size moves most clients).
    IpModulo,
    /// Even spread over the healthy replicas.
    RoundRobin,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::Cookie,
        Strategy::IpHash,
        Strategy::IpModulo,
        Strategy::RoundRobin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Cookie => "cookie",
            Strategy::IpHash => "ip-hash",
            Strategy::IpModulo => "ip-modulo",
            Strategy::RoundRobin => "round-robin",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a strategy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy {0:?}: expected cookie, ip-hash, ip-modulo or round-robin")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Strategy::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownStrategy(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_serde() {
        for s in Strategy::ALL {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
            let json = serde_json::to_string(&s).expect("serialise");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Strategy>(&json).expect("parse"), s);
        }
        assert_eq!(
            "sticky".parse::<Strategy>(),
            Err(UnknownStrategy("sticky".into()))
        );
    }
}
