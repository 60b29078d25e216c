//! Skewed populations: a few heavy users sending most requests, or one source address carrying
//! many users (an office behind a NAT).
//!
//! A Zipf law of exponent S gives the item of rank k (1-based) the weight k^−S. Users are ranked
//! by their id (user 0 is rank 1, the heaviest). With `--skew zipf:S` a user of the closed model
//! thinks `--think-ms` × k^S between its requests, so its request rate follows the law while the
//! think time dominates its answers' time: heavy users think less. With `--sources-skew zipf:S`
//! the users are shared out among the source addresses in proportion to the addresses' weights
//! (the largest remainders round), so the first address carries the most users.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The share of users, the heaviest first, whose latency is reported apart as "heavy users": at
/// least one user.
pub const HEAVY_SHARE: f64 = 0.05;

/// A Zipf law over ranks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Zipf {
    /// The exponent: 0 is uniform, 1 the classic law, above 1 steeper.
    pub s: f64,
}

impl fmt::Display for Zipf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zipf:{}", self.s)
    }
}

/// `zipf:S`, S from 0 to 5.
impl FromStr for Zipf {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text
            .strip_prefix("zipf:")
            .ok_or_else(|| format!("'{text}' is not zipf:S (e.g. zipf:1.1)"))?;
        let s: f64 = s
            .parse()
            .ok()
            .filter(|v: &f64| (0.0..=5.0).contains(v))
            .ok_or_else(|| format!("the Zipf exponent must be a number from 0 to 5, got '{s}'"))?;
        Ok(Zipf { s })
    }
}

impl Zipf {
    /// The weight of rank `k` (1-based), relative to rank 1.
    pub fn weight(&self, k: u64) -> f64 {
        (k.max(1) as f64).powf(-self.s)
    }

    /// The weights of ranks 1..=n, summing to 1.
    pub fn shares(&self, n: usize) -> Vec<f64> {
        let raw: Vec<f64> = (1..=n as u64).map(|k| self.weight(k)).collect();
        let total: f64 = raw.iter().sum();
        raw.iter()
            .map(|w| w / total.max(f64::MIN_POSITIVE))
            .collect()
    }

    /// The think-time factor of the user with id `id`: 1 for the heaviest, k^S for rank k.
    pub fn think_factor(&self, id: u64) -> f64 {
        1.0 / self.weight(id + 1)
    }

    /// Shares `items` out among `n` bins in proportion to the law: the bin of each item, items
    /// in order, bin 0 first. Every bin's count is its exact share rounded down or up (largest
    /// remainders).
    pub fn assign(&self, items: usize, n: usize) -> Vec<usize> {
        if n == 0 {
            return Vec::new();
        }
        let shares = self.shares(n);
        let exact: Vec<f64> = shares.iter().map(|s| s * items as f64).collect();
        let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|a, b| {
            let (ra, rb) = (exact[*a] - exact[*a].floor(), exact[*b] - exact[*b].floor());
            rb.total_cmp(&ra).then(a.cmp(b))
        });
        let short = items - counts.iter().sum::<usize>();
        for i in order.into_iter().take(short) {
            counts[i] += 1;
        }
        counts
            .iter()
            .enumerate()
            .flat_map(|(bin, c)| std::iter::repeat_n(bin, *c))
            .collect()
    }
}

/// How many of `users` count as heavy: the top [`HEAVY_SHARE`], at least one.
pub fn heavy_users(users: u64) -> u64 {
    ((users as f64 * HEAVY_SHARE).ceil() as u64)
        .max(1)
        .min(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_reads_as_its_law() {
        assert_eq!("zipf:1.1".parse::<Zipf>(), Ok(Zipf { s: 1.1 }));
        assert!("zipf".parse::<Zipf>().is_err());
        assert!("pareto:1".parse::<Zipf>().is_err());
        assert!("zipf:-1".parse::<Zipf>().is_err());
        assert_eq!(Zipf { s: 1.1 }.to_string(), "zipf:1.1");
    }

    #[test]
    fn shares_follow_the_law() {
        let z = Zipf { s: 1.0 };
        let shares = z.shares(100);
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Rank k against rank 1: exactly 1/k.
        for k in [2usize, 5, 10, 100] {
            assert!((shares[0] / shares[k - 1] - k as f64).abs() < 1e-9);
        }
        // The harmonic number H_100 ≈ 5.187: rank 1 holds 1/H_100 of the total.
        assert!((shares[0] - 1.0 / 5.187_377_517_639_621).abs() < 1e-9);
        let flat = Zipf { s: 0.0 }.shares(4);
        assert!(flat.iter().all(|s| (s - 0.25).abs() < 1e-12));
    }

    #[test]
    fn heavy_users_think_less() {
        let z = Zipf { s: 1.1 };
        assert_eq!(z.think_factor(0), 1.0);
        assert!((z.think_factor(9) - 10f64.powf(1.1)).abs() < 1e-9);
    }

    #[test]
    fn an_assignment_holds_every_bin_to_its_share() {
        let z = Zipf { s: 1.0 };
        let bins = z.assign(200, 8);
        assert_eq!(bins.len(), 200);
        let shares = z.shares(8);
        for (b, share) in shares.iter().enumerate() {
            let got = bins.iter().filter(|x| **x == b).count() as f64;
            assert!((got - share * 200.0).abs() < 1.0, "bin {b}: {got}");
        }
        // In order: the first users go to the heaviest address.
        assert_eq!(bins[0], 0);
        assert!(bins.windows(2).all(|w| w[0] <= w[1]));
        assert!(z.assign(5, 0).is_empty());
    }

    #[test]
    fn the_heavy_users_are_the_top_twentieth() {
        assert_eq!(heavy_users(200), 10);
        assert_eq!(heavy_users(20), 1);
        assert_eq!(heavy_users(1), 1);
        assert_eq!(heavy_users(0), 0);
    }
}
