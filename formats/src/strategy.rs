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
    /// The power of two choices: two replicas drawn at random, the one with fewer requests in
    /// flight takes the request.
    LeastRequests,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::Cookie,
        Strategy::IpHash,
        Strategy::IpModulo,
        Strategy::RoundRobin,
        Strategy::LeastRequests,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Cookie => "cookie",
            Strategy::IpHash => "ip-hash",
            Strategy::IpModulo => "ip-modulo",
            Strategy::RoundRobin => "round-robin",
            Strategy::LeastRequests => "least-requests",
        }
    }

    /// Whether a [`BalanceFactor`] bounds this strategy's choices: ip-hash's hashed replica, and
    /// cookie's replica for a new client. The others place by the pool's spread or its loads
    /// already.
    pub fn takes_balance_factor(self) -> bool {
        matches!(self, Strategy::Cookie | Strategy::IpHash)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a strategy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown strategy {0:?}: expected cookie, ip-hash, ip-modulo, round-robin or least-requests"
)]
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

/// Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam): a percentage of
/// the pool's average load, at least 100, that no replica is given a new request beyond. A
/// client's hashed replica is passed over while its requests in flight would exceed
/// `factor / 100 × (the pool's requests in flight + 1) / replicas`, rounded up, and the walk
/// goes on along the ring. 125 lets a replica carry a quarter more than the average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct BalanceFactor(u16);

impl BalanceFactor {
    /// The least factor: every replica held to the average, rounded up.
    pub const MIN: u32 = 100;
    /// The greatest factor accepted; beyond it the bound would almost never apply.
    pub const MAX: u32 = 1000;

    pub fn new(percent: u32) -> Result<Self, BadBalanceFactor> {
        if (Self::MIN..=Self::MAX).contains(&percent) {
            Ok(BalanceFactor(percent as u16))
        } else {
            Err(BadBalanceFactor(percent.to_string()))
        }
    }

    pub fn percent(self) -> u32 {
        u32::from(self.0)
    }

    /// A pool's factor in words: its percentage, or `off`.
    pub fn word(factor: Option<BalanceFactor>) -> String {
        factor.map_or_else(|| "off".to_string(), |f| f.to_string())
    }

    /// The most requests in flight a replica may hold after taking one more request, when the
    /// `eligible` replicas hold `in_flight` between them.
    pub fn limit(self, in_flight: u64, eligible: usize) -> u64 {
        let n = eligible.max(1) as u64;
        let scaled = u64::from(self.0) * (in_flight + 1);
        scaled.div_ceil(100 * n)
    }
}

impl TryFrom<u32> for BalanceFactor {
    type Error = BadBalanceFactor;
    fn try_from(v: u32) -> Result<Self, Self::Error> {
        BalanceFactor::new(v)
    }
}

impl From<BalanceFactor> for u32 {
    fn from(f: BalanceFactor) -> u32 {
        f.percent()
    }
}

impl fmt::Display for BalanceFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for BalanceFactor {
    type Err = BadBalanceFactor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        s.parse::<u32>()
            .map_err(|_| BadBalanceFactor(s.to_string()))
            .and_then(BalanceFactor::new)
    }
}

/// The text or number was not a balance factor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "balance factor {0:?}: expected a percentage from {min} to {max}, e.g. 125",
    min = BalanceFactor::MIN,
    max = BalanceFactor::MAX
)]
pub struct BadBalanceFactor(pub String);

/// The body of `PUT /admin/pools/{pool}/strategy`: a strategy, a balance factor, or both. A
/// `balance_factor` of `null` turns bounded loads off; an absent one leaves it as it is. The body
/// may also be a strategy's name as a JSON string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRouting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub balance_factor: Option<Option<BalanceFactor>>,
}

/// The answer of `PUT /admin/pools/{pool}/strategy`: the pool's routing after the change (also
/// what `scripts/lab --json strategy POOL ...` prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routed {
    pub pool: String,
    pub strategy: Strategy,
    /// `null` when bounded loads are off.
    #[serde(default)]
    pub balance_factor: Option<BalanceFactor>,
}

/// A field that is present, `null` included: `Some(None)` for `null`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
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

    #[test]
    fn balance_factors_are_percentages_from_100_to_1000() {
        assert_eq!("125".parse::<BalanceFactor>().map(|f| f.percent()), Ok(125));
        for bad in ["99", "0", "1001", "1.25", "x", ""] {
            assert!(bad.parse::<BalanceFactor>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<BalanceFactor>("50").is_err());
        assert_eq!(
            serde_json::to_string(&BalanceFactor(150)).expect("json"),
            "150"
        );
    }

    #[test]
    fn the_limit_is_the_factor_times_the_average_with_the_new_request_rounded_up() {
        let f = BalanceFactor::new(125).expect("factor");
        // Nothing in flight over 3 replicas: 1.25 × 1 / 3 rounds up to 1.
        assert_eq!(f.limit(0, 3), 1);
        // 11 in flight + 1 over 3: 1.25 × 4 = 5.
        assert_eq!(f.limit(11, 3), 5);
        // Factor 100: exactly the average, rounded up.
        assert_eq!(BalanceFactor::new(100).expect("factor").limit(5, 3), 2);
        assert_eq!(f.limit(7, 0), 10);
    }

    #[test]
    fn a_routing_change_tells_null_from_absent() {
        let off: PoolRouting = serde_json::from_str(r#"{"balance_factor": null}"#).expect("off");
        assert_eq!(off.balance_factor, Some(None));
        assert_eq!(off.strategy, None);
        let keep: PoolRouting = serde_json::from_str(r#"{"strategy": "ip-hash"}"#).expect("keep");
        assert_eq!(keep.balance_factor, None);
        assert_eq!(keep.strategy, Some(Strategy::IpHash));
        let set: PoolRouting =
            serde_json::from_str(r#"{"strategy": "cookie", "balance_factor": 125}"#).expect("set");
        assert_eq!(set.balance_factor, Some(BalanceFactor::new(125).ok()));
        assert!(serde_json::from_str::<PoolRouting>(r#"{"balance_factor": 90}"#).is_err());
        assert!(serde_json::from_str::<PoolRouting>(r#"{"strateg": "cookie"}"#).is_err());
    }
}
