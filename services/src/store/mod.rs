//! The three implementations of [`SessionStore`](crate::SessionStore).
//!
//! | store | where the session lives | what dies with a replica | what it costs |
//! |---|---|---|---|
//! | [`MemoryStore`] | this process's memory | every session it holds | memory per session, up to a cap; sticky routing |
//! | [`JwtStore`] | a signed token the client carries | nothing | token bytes on every request; no revocation |
//! | [`RedisStore`] | Redis | nothing (Redis is the dependency) | one round trip per request |

mod jwt;
mod memory;
mod redis;

pub use self::jwt::{JwtKey, JwtStore};
pub use self::memory::{MemoryConfig, MemoryStore};
/// The way to Redis, shared with the chat broker.
pub(crate) use self::redis::link::{Conn, Link};
pub use self::redis::link::{Topology, WaitConfig};
pub use self::redis::{RedisConfig, RedisStore};
