//! cookie: sticky sessions through an affinity cookie the proxy sets.

use http::HeaderValue;
use pingora::http::RequestHeader;
use sha2::{Digest, Sha256};

use super::{Admission, Client, ReplicaId, RoundRobin, Route, RouteKey};

/// Sticky sessions: a client whose affinity cookie names a replica that can still serve it goes
/// there (a draining one included); any other client is placed by round-robin and pinned to
/// where it landed.
#[derive(Debug)]
pub struct Cookie {
    affinity: CookieAffinity,
    spread: RoundRobin,
}

impl Cookie {
    pub fn new(affinity: CookieAffinity, spread: RoundRobin) -> Self {
        Cookie { affinity, spread }
    }

    /// The affinity cookie's name.
    pub fn cookie_name(&self) -> &str {
        self.affinity.cookie_name()
    }
}

impl Route for Cookie {
    fn key(&self, req: &RequestHeader, _client: Client<'_>) -> RouteKey {
        match self.affinity.pinned(req.headers.get_all("cookie").iter()) {
            Some(r) => RouteKey::pinned_to(r),
            None => RouteKey::default(),
        }
    }

    fn pick(
        &self,
        key: &RouteKey,
        accept: &mut dyn FnMut(ReplicaId, Admission) -> bool,
    ) -> Option<ReplicaId> {
        if let Some(pinned) = key.pinned {
            if accept(pinned, Admission::Pinned) {
                return Some(pinned);
            }
        }
        // The pinned replica was offered already; the walk may offer it again as a new client's,
        // where a draining one is refused.
        Route::pick(&self.spread, key, accept)
    }

    fn pin(&self, key: &RouteKey, chosen: ReplicaId) -> Option<&HeaderValue> {
        if key.pinned == Some(chosen) {
            return None;
        }
        self.affinity.set_cookie(chosen)
    }
}

/// The sticky layer: an opaque token per replica, and the `Set-Cookie` header that pins to it.
///
/// Tokens are a keyed SHA-256 of the pool and replica name, truncated: they reveal neither the
/// address nor the name, and a value that matches no token is treated as no cookie at all.
#[derive(Debug)]
pub struct CookieAffinity {
    name: String,
    tokens: Vec<String>,
    set_cookie: Vec<HeaderValue>,
}

impl CookieAffinity {
    /// Cookie name prefix; the pool name is appended so pools never overwrite each other's pin.
    pub const COOKIE_PREFIX: &'static str = "statelab_affinity_";

    pub fn new(secret: &[u8], pool: &str, replicas: &[String]) -> Self {
        let name = format!("{}{pool}", Self::COOKIE_PREFIX);
        let tokens: Vec<String> = replicas
            .iter()
            .map(|r| {
                let mut h = Sha256::new();
                h.update(secret);
                h.update(pool.as_bytes());
                h.update([0u8]);
                h.update(r.as_bytes());
                h.finalize()[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .collect();
        let set_cookie = tokens
            .iter()
            .map(|t| {
                HeaderValue::from_str(&format!("{name}={t}; Path=/; HttpOnly; SameSite=Lax"))
                    .unwrap_or_else(|_| HeaderValue::from_static(""))
            })
            .collect();
        Self {
            name,
            tokens,
            set_cookie,
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// The replica a request's `Cookie` headers pin it to, if any token is valid.
    pub fn pinned<'a>(
        &self,
        cookie_headers: impl Iterator<Item = &'a HeaderValue>,
    ) -> Option<ReplicaId> {
        for header in cookie_headers {
            let Ok(text) = header.to_str() else { continue };
            for pair in text.split(';') {
                let Some((k, v)) = pair.trim().split_once('=') else {
                    continue;
                };
                if k != self.name {
                    continue;
                }
                if let Some(i) = self.tokens.iter().position(|t| t == v.trim_matches('"')) {
                    return Some(ReplicaId(i));
                }
            }
        }
        None
    }

    /// The `Set-Cookie` value pinning to a replica.
    pub fn set_cookie(&self, r: ReplicaId) -> Option<&HeaderValue> {
        self.set_cookie.get(r.0)
    }
}
