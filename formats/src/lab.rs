//! The lab's layout and limits, shared by the lab supervisor that applies them, the proxy's
//! default configuration and the load generator that checks its flags against them.

use crate::Design;

/// Replicas per pool when the lab comes up.
pub const REPLICAS_PER_POOL: u8 = 3;

/// The most replicas a pool can be scaled to in the lab: the fixed native ports (`stateful-k` on
/// 18000+k, `stateless-k` on 18010+k) and the container addresses (`.1k`, `.2k`, `.3k`) leave
/// room for k = 1..9. (The proxy itself takes up to [`crate::config::MAX_REPLICAS_PER_POOL`].)
pub const MAX_REPLICAS_PER_POOL: u8 = 9;

/// Tens digit of a design's fixed ports (18001.., 18011.., 18021..) and container addresses
/// (.11.., .21.., .31..).
pub fn slot(design: Design) -> u16 {
    match design {
        Design::Stateful => 0,
        Design::Stateless => 1,
        Design::Externalized => 2,
    }
}

/// The fixed native port of replica `index` (from 1): stateful-k 18000+k, stateless-k 18010+k,
/// externalized-k 18020+k.
pub fn fixed_port(design: Design, index: u8) -> u16 {
    18000 + 10 * slot(design) + u16::from(index)
}

/// The last octet of replica `index`'s container address: stateful-k .1k, stateless-k .2k,
/// externalized-k .3k.
pub fn container_octet(design: Design, index: u8) -> u16 {
    10 * (slot(design) + 1) + u16::from(index)
}
