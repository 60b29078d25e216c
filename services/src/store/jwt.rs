//! Sessions in a signed token the client carries: the stateless design.
//!
//! The whole session — user, counters, cart — is in the claims of an HS256 JWT. The server keeps
//! nothing, so any replica with the key serves any request, and every change is answered with a
//! new token (which also slides the expiry). What this costs, and the tests pin down:
//! - logout cannot revoke a token: it stays valid until `exp`;
//! - two requests racing on one token each produce a token missing the other's change;
//! - every request carries and verifies the whole token, so the cart has to stay small;
//! - reads cannot be recorded: a read that changed the token would need a new token on every
//!   read, so `requests_in_session` counts only the requests that issued one, and the idle
//!   expiry slides only on changes.
//!
//! Keys carry an id (`kid`) derived from the secret, so a replica can verify tokens signed with
//! a previous key during a rotation while signing only with the current one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use prometheus::{Histogram, HistogramOpts};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::session::{
    hex, now_ms, random_id, Applied, Cart, Change, Issued, Session, SessionStore, StoreError,
    StoreFigures,
};

/// Shortest secret accepted: HS256 keys shorter than the hash output weaken it.
pub const MIN_SECRET_LEN: usize = 32;
/// Largest token the service issues or accepts; past it browsers drop cookies.
pub const MAX_TOKEN_LEN: usize = 4096;
const ISSUER: &str = "statelab";
const AUDIENCE: &str = "statelab-services";

/// One HS256 signing key and its id.
#[derive(Clone)]
pub struct JwtKey {
    id: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl JwtKey {
    /// A key from a secret of at least [`MIN_SECRET_LEN`] bytes. The id is a short hash of the
    /// secret: stable across replicas that share the secret, and revealing nothing of it.
    pub fn from_secret(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the JWT secret is {} bytes; it must be at least {MIN_SECRET_LEN}",
                secret.len()
            ));
        }
        let digest = Sha256::digest(secret);
        Ok(JwtKey {
            id: hex(&digest[..6]),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// The `kid` this key signs with.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: u64,
    exp: u64,
    /// Unique per token, so a new login always yields a new token even within one second.
    jti: String,
    /// Session creation time, ms since the epoch.
    ctm: u64,
    /// Requests in the session.
    req: u64,
    #[serde(default)]
    cart: Cart,
}

/// The JWT session store. Holds keys and settings only — never a session.
#[derive(Debug)]
pub struct JwtStore {
    current: JwtKey,
    previous: Vec<JwtKey>,
    ttl: Duration,
    validation: Validation,
    token_bytes: Histogram,
    /// Bytes and count of the tokens clients presented (verified or not), for the detailed health
    /// answer: what the design makes every client carry on every request.
    presented_bytes: AtomicU64,
    presented: AtomicU64,
}

impl JwtStore {
    /// `previous` keys still verify tokens but never sign.
    pub fn new(
        current: JwtKey,
        previous: Vec<JwtKey>,
        ttl: Duration,
        metrics: &Metrics,
    ) -> Result<Self, prometheus::Error> {
        let token_bytes = Histogram::with_opts(
            HistogramOpts::new(
                "statelab_token_bytes",
                "Size of each token issued, in bytes",
            )
            .buckets(vec![256.0, 512.0, 1024.0, 1536.0, 2048.0, 3072.0, 4096.0]),
        )?;
        metrics.registry().register(Box::new(token_bytes.clone()))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(JwtStore {
            current,
            previous,
            ttl,
            validation,
            token_bytes,
            presented_bytes: AtomicU64::new(0),
            presented: AtomicU64::new(0),
        })
    }

    fn sign(&self, session: &Session) -> Result<String, StoreError> {
        let iat = now_ms() / 1000;
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: session.username.clone(),
            iat,
            exp: iat + self.ttl.as_secs().max(1),
            jti: random_id()?,
            ctm: session.created_ms,
            req: session.requests,
            cart: session.cart.clone(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current.id.clone());
        let token = encode(&header, &claims, &self.current.encoding)
            .map_err(|e| StoreError::Unavailable(format!("signing: {e}")))?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(StoreError::CartFull);
        }
        self.token_bytes.observe(token.len() as f64);
        Ok(token)
    }

    /// The session a token carries, if the token is well-formed, signed by a known key with
    /// HS256, unexpired, and addressed to us. Anything else is simply no session.
    fn verify(&self, token: &str) -> Option<Session> {
        self.presented_bytes
            .fetch_add(token.len() as u64, Ordering::Relaxed);
        self.presented.fetch_add(1, Ordering::Relaxed);
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        // Try the current key first: nearly every token is signed with it, and `decode`
        // parses the header itself, so no separate header pass is paid for. A token signed by
        // a previous key costs one failed attempt more. Either way the `kid` must match.
        let claims = std::iter::once(&self.current)
            .chain(&self.previous)
            .find_map(|key| {
                let data = decode::<Claims>(token, &key.decoding, &self.validation).ok()?;
                (data.header.kid.as_deref() == Some(key.id.as_str())).then_some(data.claims)
            })?;
        if claims.iat > now_ms() / 1000 + self.validation.leeway {
            return None;
        }
        Some(Session {
            username: claims.sub,
            created_ms: claims.ctm,
            requests: claims.req,
            cart: claims.cart,
        })
    }
}

impl SessionStore for JwtStore {
    const KIND: &'static str = "stateless";
    const CREDENTIAL_IN_BODY: bool = true;

    async fn create(&self, username: &str, _replaces: Option<&str>) -> Result<Issued, StoreError> {
        // The old token cannot be forgotten: it stays valid until it expires.
        let session = Session::new(username);
        Ok(Issued {
            credential: self.sign(&session)?,
            session,
        })
    }

    async fn apply(
        &self,
        credential: &str,
        change: Change<'_>,
    ) -> Result<Option<Applied>, StoreError> {
        let Some(mut session) = self.verify(credential) else {
            return Ok(None);
        };
        if change == Change::Touch {
            // A read changes nothing the token could record without a new token on every
            // read; the client's token stays as it is, and so does its request count.
            return Ok(Some(Applied {
                session,
                reissued: None,
                taken: Cart::new(),
            }));
        }
        let taken = session.apply(&change)?;
        let reissued = Some(self.sign(&session)?);
        Ok(Some(Applied {
            session,
            reissued,
            taken,
        }))
    }

    async fn destroy(&self, _credential: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn figures(&self) -> Result<StoreFigures, StoreError> {
        Ok(StoreFigures {
            token_bytes_total: Some(self.presented_bytes.load(Ordering::Relaxed)),
            tokens_total: Some(self.presented.load(Ordering::Relaxed)),
            ..StoreFigures::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(key: JwtKey, previous: Vec<JwtKey>) -> JwtStore {
        let metrics = Metrics::new("stateless", "test").expect("metrics");
        JwtStore::new(key, previous, Duration::from_secs(600), &metrics).expect("store")
    }

    fn key(byte: u8) -> JwtKey {
        JwtKey::from_secret(&[byte; 32]).expect("key")
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(JwtKey::from_secret(&[7; 31]).is_err());
    }

    #[tokio::test]
    async fn a_previous_key_still_verifies_during_rotation() {
        let old = store_with(key(1), vec![]);
        let token = old.create("alice", None).await.expect("create").credential;

        let rotated = store_with(key(2), vec![key(1)]);
        let add = Change::AddItem {
            sku: "apple",
            qty: 1,
        };
        let applied = rotated
            .apply(&token, add)
            .await
            .expect("apply")
            .expect("valid");
        let reissued = applied.reissued.expect("new token");
        assert_eq!(
            jsonwebtoken::decode_header(&reissued)
                .expect("header")
                .kid
                .as_deref(),
            Some(key(2).id())
        );

        let without_old = store_with(key(2), vec![]);
        assert!(without_old
            .apply(&token, Change::Touch)
            .await
            .expect("apply")
            .is_none());
    }

    #[tokio::test]
    async fn expired_tokens_are_no_session() {
        let store = store_with(key(1), vec![]);
        let past = now_ms() / 1000 - 3600;
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "alice".into(),
            iat: past,
            exp: past + 60,
            jti: "x".into(),
            ctm: past * 1000,
            req: 1,
            cart: Cart::new(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key(1).id().to_owned());
        let token = encode(&header, &claims, &key(1).encoding).expect("encode");
        assert!(store
            .apply(&token, Change::Touch)
            .await
            .expect("apply")
            .is_none());
    }

    #[tokio::test]
    async fn a_full_cart_still_fits_the_token_limit() {
        let store = store_with(key(1), vec![]);
        let mut session = Session::new(&"\"".repeat(crate::session::MAX_USERNAME_LEN));
        for i in 0..crate::session::MAX_CART_LINES {
            let sku = format!("{i:0>width$}", width = crate::session::MAX_SKU_LEN);
            session
                .apply(&Change::AddItem {
                    sku: &sku,
                    qty: crate::session::MAX_LINE_QTY,
                })
                .expect("add");
        }
        let token = store.sign(&session).expect("fits");
        assert!(token.len() <= MAX_TOKEN_LEN, "{} bytes", token.len());
    }
}
