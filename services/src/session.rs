//! The session model and the seam the three services differ in.
//!
//! A store is not asked to "load" and "save" a session as two steps: that shape cannot keep a
//! cart update atomic when two requests for one session race. Instead every request hands the
//! store one [`Change`] and the store applies it atomically in its own way — under a lock in
//! memory, in a Lua script in Redis, or by re-signing a new token for the JWT design (which
//! cannot be atomic across requests, and the tests show what that loses).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use statelab_formats::Design;
pub use statelab_formats::StoreFigures;

/// Items in a cart: SKU to quantity. Ordered so responses and tokens are deterministic.
pub type Cart = BTreeMap<String, u32>;

/// Most distinct SKUs one cart may hold. Chosen so that a full cart still fits a JWT under 4 KiB.
pub const MAX_CART_LINES: usize = 32;
/// Most units of one SKU a cart may hold, so counters can never overflow.
pub const MAX_LINE_QTY: u32 = 1_000_000;
/// Longest SKU accepted, in bytes.
pub const MAX_SKU_LEN: usize = 64;
/// Longest username accepted, in bytes.
pub const MAX_USERNAME_LEN: usize = 64;

/// What a session holds, whichever design stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    /// Wall-clock creation time, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Requests served in this session, the current one included.
    pub requests: u64,
    pub cart: Cart,
}

impl Session {
    /// A fresh session, counting the login request itself.
    pub fn new(username: &str) -> Self {
        Session {
            username: username.to_owned(),
            created_ms: now_ms(),
            requests: 1,
            cart: Cart::new(),
        }
    }

    /// Applies one change in place; the stores call this while they hold the session exclusively.
    /// Returns what a checkout took out of the cart (empty for other changes).
    pub fn apply(&mut self, change: &Change<'_>) -> Result<Cart, StoreError> {
        let taken = match change {
            Change::Touch => Cart::new(),
            Change::AddItem { sku, qty } => {
                add_to_cart(&mut self.cart, sku, *qty)?;
                Cart::new()
            }
            Change::Checkout => std::mem::take(&mut self.cart),
        };
        self.requests = self.requests.saturating_add(1);
        Ok(taken)
    }
}

/// One request's effect on a session. Every authenticated request is at least a `Touch`: it
/// counts the request and slides the idle expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    Touch,
    AddItem { sku: &'a str, qty: u32 },
    Checkout,
}

/// A session after a change was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub session: Session,
    /// A new credential to hand back to the client, for designs whose credential *is* the
    /// state (the JWT). `None` when the old one stays valid.
    pub reissued: Option<String>,
    /// For a checkout: the cart as it was when it was emptied.
    pub taken: Cart,
}

/// A freshly created session and the credential that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub credential: String,
    pub session: Session,
}

/// Why a store could not do what it was asked. Request paths map these to statuses; the detail
/// in `Unavailable` and `Full` is for logs only and never reaches a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("the cart is full")]
    CartFull,
    /// The store holds as many sessions as it is configured to: no new session until one ends.
    /// Only a new session is refused; the ones held keep working.
    #[error("the store holds its maximum of {0} sessions")]
    AtCapacity(usize),
    /// The store itself refused to grow (Redis at `maxmemory` with `noeviction`). Like
    /// `AtCapacity` it turns away new sessions only, but the bound is the store's, not ours.
    #[error("the session store refused to grow: {0}")]
    Full(String),
}

/// Where sessions live: the only thing that differs between statelab's three services.
///
/// Credentials are opaque strings: a random id for the stores that keep state server-side, the
/// signed token itself for the JWT store. An unknown, expired or forged credential is `Ok(None)`,
/// not an error: it is the client's problem (401), not the store's (503).
pub trait SessionStore: Send + Sync + 'static {
    /// The design, named in metrics and `/health`.
    const DESIGN: Design;
    /// Whether the credential may be shown to the client in a response body. True only for the
    /// JWT, which clients that cannot keep cookies must carry as a bearer token.
    const CREDENTIAL_IN_BODY: bool;

    /// Creates a session. `replaces` is the credential the client presented at login, if any:
    /// stores that can forget it do, so a login always rotates the session (no fixation).
    fn create(
        &self,
        username: &str,
        replaces: Option<&str>,
    ) -> impl Future<Output = Result<Issued, StoreError>> + Send;

    /// Applies `change` atomically to the session `credential` names.
    fn apply(
        &self,
        credential: &str,
        change: Change<'_>,
    ) -> impl Future<Output = Result<Option<Applied>, StoreError>> + Send;

    /// Ends the session, where the design is able to.
    fn destroy(&self, credential: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the store can serve right now (for `/health`).
    fn check(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The check of [`Self::check`] plus what the store can tell about its sessions cheaply, for
    /// the proxy's detailed health check (`GET /health?detail=1`, once a check interval per
    /// replica). Every figure must cost O(1): no key scan, no walk over the sessions.
    fn figures(&self) -> impl Future<Output = Result<StoreFigures, StoreError>> + Send {
        async {
            self.check().await?;
            Ok(StoreFigures::default())
        }
    }
}

/// Adds `qty` of `sku`, enforcing the cart limits every design shares.
pub fn add_to_cart(cart: &mut Cart, sku: &str, qty: u32) -> Result<(), StoreError> {
    match cart.get_mut(sku) {
        Some(have) => {
            let total = have.checked_add(qty).filter(|t| *t <= MAX_LINE_QTY);
            *have = total.ok_or(StoreError::CartFull)?;
        }
        None => {
            if cart.len() >= MAX_CART_LINES || qty > MAX_LINE_QTY {
                return Err(StoreError::CartFull);
            }
            cart.insert(sku.to_owned(), qty);
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A new 128-bit session id from the operating system's RNG, hex-encoded.
pub fn random_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Unavailable(format!("OS RNG: {e}")))?;
    Ok(hex(&bytes))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cart_limits_hold() {
        let mut cart = Cart::new();
        for i in 0..MAX_CART_LINES {
            add_to_cart(&mut cart, &format!("sku{i}"), 1).expect("room for a line");
        }
        assert!(matches!(
            add_to_cart(&mut cart, "one-more", 1),
            Err(StoreError::CartFull)
        ));
        add_to_cart(&mut cart, "sku0", MAX_LINE_QTY - 1).expect("up to the line limit");
        assert!(matches!(
            add_to_cart(&mut cart, "sku0", 1),
            Err(StoreError::CartFull)
        ));
        assert_eq!(cart["sku0"], MAX_LINE_QTY);
    }

    #[test]
    fn checkout_takes_the_cart_and_counts_the_request() {
        let mut s = Session::new("alice");
        s.apply(&Change::AddItem {
            sku: "apple",
            qty: 2,
        })
        .expect("add");
        let taken = s.apply(&Change::Checkout).expect("checkout");
        assert_eq!(taken.get("apple"), Some(&2));
        assert!(s.cart.is_empty());
        assert_eq!(s.requests, 3);
    }

    #[test]
    fn ids_are_128_bit_hex_and_differ() {
        let a = random_id().expect("rng");
        let b = random_id().expect("rng");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
