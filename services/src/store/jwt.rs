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

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use prometheus::{Histogram, HistogramOpts};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use statelab_formats::Design;

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
/// The only algorithm the service signs with or accepts.
const ALGORITHM: Algorithm = Algorithm::HS256;
/// Clock skew tolerated between the replica that signed a token and the one that reads it.
const LEEWAY_SECS: u64 = 5;

/// One HS256 signing key and its id.
#[derive(Clone)]
pub struct JwtKey {
    id: String,
    encoding: EncodingKey,
    /// The HMAC keyed once: each verification clones it rather than deriving the inner and
    /// outer pads from the secret again.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl JwtKey {
    /// A key from a secret of at least `MIN_SECRET_LEN` bytes. The id is a short hash of the
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
            mac: Hmac::new_from_slice(secret).map_err(|e| format!("the JWT secret: {e}"))?,
        })
    }

    /// The `kid` this key signs with.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The JWT session store. Holds keys and settings only — never a session.
#[derive(Debug)]
pub struct JwtStore {
    current: JwtKey,
    previous: Vec<JwtKey>,
    ttl: Duration,
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
        Ok(JwtStore {
            current,
            previous,
            ttl,
            token_bytes,
            presented_bytes: AtomicU64::new(0),
            presented: AtomicU64::new(0),
        })
    }

    fn sign(&self, session: &Session) -> Result<String, StoreError> {
        let iat = now_ms() / 1000;
        let claims = Claims {
            iss: Cow::Borrowed(ISSUER),
            aud: Audience::One(Cow::Borrowed(AUDIENCE)),
            sub: Cow::Borrowed(&session.username),
            iat,
            exp: iat + self.ttl.as_secs().max(1),
            nbf: None,
            jti: Cow::Owned(random_id()?),
            ctm: session.created_ms,
            req: session.requests,
            cart: Cow::Borrowed(&session.cart),
        };
        let mut header = Header::new(ALGORITHM);
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
    ///
    /// Each part of the token is decoded once: the header to pick the key its `kid` names (one
    /// HMAC, with no trial of other keys), the tag checked by that key's prepared HMAC state
    /// (RustCrypto's `hmac`, constant-time comparison), then the payload straight into
    /// [`Claims`], borrowing what the session does not keep. `jsonwebtoken::decode` would
    /// decode the header twice and the claims twice (once for its checks, once for the caller)
    /// and key a new HMAC each time: 2.3-2.6 µs per token against 1.1-1.2 µs here, measured in
    /// docs/benchmarks.md. The claim checks it would run are the ones in [`Claims::check`].
    fn verify(&self, token: &str) -> Option<Session> {
        self.presented_bytes
            .fetch_add(token.len() as u64, Ordering::Relaxed);
        self.presented.fetch_add(1, Ordering::Relaxed);
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (message, signature) = token.rsplit_once('.')?;
        let (header, payload) = message.rsplit_once('.')?;
        let mut buf = [0u8; MAX_TOKEN_LEN / 4 * 3];
        let len = URL_SAFE_NO_PAD.decode_slice(header, &mut buf).ok()?;
        let header: TokenHeader<'_> = serde_json::from_slice(&buf[..len]).ok()?;
        if header.alg.parse::<Algorithm>().ok() != Some(ALGORITHM) {
            return None;
        }
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == header.kid)?;
        let mut tag = [0u8; 32];
        let len = URL_SAFE_NO_PAD.decode_slice(signature, &mut tag).ok()?;
        let mut mac = key.mac.clone();
        mac.update(message.as_bytes());
        mac.verify_slice(&tag[..len]).ok()?;
        let len = URL_SAFE_NO_PAD.decode_slice(payload, &mut buf).ok()?;
        let claims: Claims<'_> = serde_json::from_slice(&buf[..len]).ok()?;
        claims.check(now_ms() / 1000)?;
        Some(Session {
            username: claims.sub.into_owned(),
            created_ms: claims.ctm,
            requests: claims.req,
            cart: claims.cart.into_owned(),
        })
    }
}

/// The JOSE header of a presented token, as read: only what decides how to verify it. A token
/// without a `kid` is no session, since the `kid` picks the key.
#[derive(Debug, Deserialize)]
struct TokenHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow)]
    kid: Cow<'a, str>,
}

/// The claims of a token, as signed and as read. Read, the strings the session does not keep
/// are borrowed from the decoded payload; signed, they are borrowed from the session. Every
/// field without a default is required, so a token missing `iss`, `aud`, `sub`, `iat`, `exp` or
/// `jti` is no session.
#[derive(Debug, Serialize, Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow)]
    aud: Audience<'a>,
    #[serde(borrow)]
    sub: Cow<'a, str>,
    iat: u64,
    exp: u64,
    /// Never signed by the service; honoured when a token from elsewhere carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    /// Unique per token, so a new login always yields a new token even within one second.
    #[serde(borrow)]
    jti: Cow<'a, str>,
    /// Session creation time, ms since the epoch.
    ctm: u64,
    /// Requests in the session.
    req: u64,
    #[serde(default)]
    cart: Cow<'a, Cart>,
}

impl Claims<'_> {
    /// The registered claims a verified token must satisfy at `now` (seconds since the epoch):
    /// our issuer; our audience among its audiences; not expired, not issued in the future and
    /// not used before `nbf`, each within [`LEEWAY_SECS`] of clock skew between replicas.
    fn check(&self, now: u64) -> Option<()> {
        let fresh = self.exp.saturating_add(LEEWAY_SECS) >= now
            && self.iat <= now.saturating_add(LEEWAY_SECS)
            && self
                .nbf
                .is_none_or(|nbf| nbf <= now.saturating_add(LEEWAY_SECS));
        (self.iss == ISSUER && self.aud.names(AUDIENCE) && fresh).then_some(())
    }
}

/// `aud` as RFC 7519 allows it: one string, or an array of strings.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

impl Audience<'_> {
    fn names(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|one| one == audience),
        }
    }
}

impl SessionStore for JwtStore {
    const DESIGN: Design = Design::Stateless;
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
            aud: Audience::One(AUDIENCE.into()),
            sub: "alice".into(),
            iat: past,
            exp: past + 60,
            nbf: None,
            jti: "x".into(),
            ctm: past * 1000,
            req: 1,
            cart: Cow::Owned(Cart::new()),
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

    /// A token for `claims`, signed with `key`'s secret and naming `kid` (if any).
    fn token(byte: u8, kid: Option<&str>, claims: &serde_json::Value) -> String {
        let mut header = Header::new(ALGORITHM);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &key(byte).encoding).expect("encode")
    }

    fn claims(now: u64) -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 60,
            "jti": "j", "ctm": now * 1000, "req": 1,
        })
    }

    /// Each registered-claim rule, at its edge: the leeway is honoured and not a second more.
    #[test]
    fn claims_are_checked_at_their_edges() {
        let store = store_with(key(1), vec![key(2)]);
        let kid = key(1).id().to_owned();
        let now = now_ms() / 1000;
        let accepted = |c: &serde_json::Value| store.verify(&token(1, Some(&kid), c)).is_some();
        let with = |field: &str, value: serde_json::Value| {
            let mut c = claims(now);
            c[field] = value;
            c
        };
        assert!(accepted(&claims(now)));
        // Expired within the leeway, and beyond it (with a second's margin for the clock).
        assert!(accepted(&with("exp", (now - LEEWAY_SECS + 1).into())));
        assert!(!accepted(&with("exp", (now - LEEWAY_SECS - 2).into())));
        // Issued in the future, and usable only later (`nbf`).
        assert!(accepted(&with("iat", (now + LEEWAY_SECS - 1).into())));
        assert!(!accepted(&with("iat", (now + LEEWAY_SECS + 2).into())));
        assert!(accepted(&with("nbf", now.into())));
        assert!(!accepted(&with("nbf", (now + LEEWAY_SECS + 2).into())));
        // An audience array must name us; the issuer must be us.
        assert!(accepted(&with(
            "aud",
            serde_json::json!(["other", AUDIENCE])
        )));
        assert!(!accepted(&with("aud", serde_json::json!(["other"]))));
        assert!(!accepted(&with("iss", "statelab2".into())));
        // Every required claim, missing or of the wrong type.
        for field in ["iss", "aud", "sub", "iat", "exp", "ctm", "req"] {
            let mut c = claims(now);
            c.as_object_mut().expect("object").remove(field);
            assert!(!accepted(&c), "without {field}");
        }
        assert!(!accepted(&with("exp", (now as f64 + 60.5).into())));
        assert!(!accepted(&with("sub", 7.into())));
    }

    /// The `kid` picks the key: a token without one, or naming a key we do not hold, or naming
    /// one key while signed with another, is no session.
    #[test]
    fn the_kid_picks_the_key() {
        let store = store_with(key(1), vec![key(2)]);
        let now = now_ms() / 1000;
        let c = claims(now);
        assert!(store.verify(&token(2, Some(key(2).id()), &c)).is_some());
        assert!(store.verify(&token(1, None, &c)).is_none());
        assert!(store.verify(&token(3, Some(key(3).id()), &c)).is_none());
        assert!(store.verify(&token(2, Some(key(1).id()), &c)).is_none());
        // The signature must be the whole tag: a prefix of the right one is refused.
        let good = token(1, Some(key(1).id()), &c);
        let (message, signature) = good.rsplit_once('.').expect("three parts");
        let short = format!("{message}.{}", &signature[..signature.len() - 11]);
        assert!(store.verify(&short).is_none());
        assert!(store
            .verify(&format!("{message}.{signature}AAAA"))
            .is_none());
        assert!(store.verify(&good).is_some());
    }
}
