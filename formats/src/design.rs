//! The three session designs: the names every part of the lab uses for them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Strategy;

/// Where a service keeps its sessions: the one thing that differs between statelab's three
/// services. Each design is one binary, one pool of replicas and one path prefix, all named by
/// [`Design::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Design {
    /// Sessions in the replica's memory.
    Stateful,
    /// Sessions in a signed token the client carries (HS256 JWT).
    Stateless,
    /// Sessions in a shared Redis.
    Externalized,
}

impl Design {
    pub const ALL: [Design; 3] = [Design::Stateful, Design::Stateless, Design::Externalized];

    /// The design's name: its binary, its pool and its path prefix without the slash.
    pub fn as_str(self) -> &'static str {
        match self {
            Design::Stateful => "stateful",
            Design::Stateless => "stateless",
            Design::Externalized => "externalized",
        }
    }

    /// The strategy the lab's pool starts with: stickiness where the session lives in the
    /// replica.
    pub fn default_strategy(self) -> Strategy {
        match self {
            Design::Stateful => Strategy::Cookie,
            Design::Stateless | Design::Externalized => Strategy::RoundRobin,
        }
    }

    /// Whether the server can end a session before it expires (logout); a token it signed stays
    /// valid until its expiry.
    pub fn can_revoke(self) -> bool {
        self != Design::Stateless
    }
}

impl fmt::Display for Design {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a design's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown design {0:?}: expected stateful, stateless or externalized")]
pub struct UnknownDesign(pub String);

impl FromStr for Design {
    type Err = UnknownDesign;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Design::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDesign(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_serde() {
        for d in Design::ALL {
            assert_eq!(d.as_str().parse::<Design>(), Ok(d));
            let json = serde_json::to_string(&d).expect("serialise");
            assert_eq!(json, format!("\"{d}\""));
            assert_eq!(serde_json::from_str::<Design>(&json).expect("parse"), d);
        }
        assert_eq!(
            "memory".parse::<Design>(),
            Err(UnknownDesign("memory".into()))
        );
    }
}
