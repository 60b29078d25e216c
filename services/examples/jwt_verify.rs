//! What verifying one session token costs, three ways, on the same token and with the same
//! checks (HS256 only, `kid` names the key, `iss`, `aud`, `exp`, `iat`, `nbf`):
//! - `store`: the stateless service's own path, [`JwtStore`] reading a token for `GET /me`;
//! - `jsonwebtoken::decode`: the library's one-call API with a reused `Validation` and
//!   `DecodingKey`, which decodes the header twice and the claims twice;
//! - `jwt-compact`: another well-kept JWT crate, with its validator and time checks.
//!
//! Each figure is the median of 5 runs of 200,000 verifications on one thread. The figures in
//! docs/benchmarks.md come from here. Usage: `cargo run --release --example jwt_verify`

use std::time::{Duration, Instant};

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{AlgorithmExt, TimeOptions, UntrustedToken};
use serde::Deserialize;
use statelab_services::metrics::Metrics;
use statelab_services::session::{Cart, Change, SessionStore};
use statelab_services::store::{JwtKey, JwtStore};

const SECRET: &[u8] = b"a-bench-secret-of-32-bytes-long!";
const RUNS: usize = 5;
const ITERATIONS: u32 = 200_000;
const ISSUER: &str = "statelab";
const AUDIENCE: &str = "statelab-services";

/// The claims as the comparison crates read them: owned, since both require `DeserializeOwned`.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: u64,
    exp: u64,
    jti: String,
    ctm: u64,
    req: u64,
    #[serde(default)]
    cart: Cart,
}

/// jwt-compact keeps the registered time claims itself and flattens the rest into this.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct CustomClaims {
    iss: String,
    aud: String,
    sub: String,
    jti: String,
    ctm: u64,
    req: u64,
    #[serde(default)]
    cart: Cart,
}

fn main() -> anyhow::Result<()> {
    let key = JwtKey::from_secret(SECRET).map_err(anyhow::Error::msg)?;
    let kid = key.id().to_owned();
    let metrics = Metrics::new("stateless", "bench")?;
    let store = JwtStore::new(key, vec![], Duration::from_secs(600), &metrics)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let token = runtime.block_on(async {
        let issued = store.create("bench-user", None).await?;
        let added = store
            .apply(
                &issued.credential,
                Change::AddItem {
                    sku: "apple",
                    qty: 2,
                },
            )
            .await?
            .and_then(|applied| applied.reissued)
            .ok_or_else(|| anyhow::anyhow!("no token"))?;
        anyhow::Ok(added)
    })?;
    println!(
        "token: {} bytes, HS256, kid {kid}; {RUNS} runs of {ITERATIONS} verifications, median",
        token.len()
    );

    let store_ns = median_ns(|| {
        runtime.block_on(async {
            for _ in 0..ITERATIONS {
                let applied = store.apply(&token, Change::Touch).await;
                assert!(
                    matches!(applied, Ok(Some(_))),
                    "the store refused its token"
                );
            }
        })
    });
    println!("{:<24} {store_ns:>8.0} ns", "store (JwtStore)");

    let decoding = DecodingKey::from_secret(SECRET);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = 5;
    let decode_ns = median_ns(|| {
        for _ in 0..ITERATIONS {
            let data = decode::<Claims>(&token, &decoding, &validation).expect("decode");
            assert_eq!(data.header.kid.as_deref(), Some(kid.as_str()));
            assert!(data.claims.iat <= now_secs() + 5);
        }
    });
    println!("{:<24} {decode_ns:>8.0} ns", "jsonwebtoken::decode");

    let header_ns = median_ns(|| {
        for _ in 0..ITERATIONS {
            let header = decode_header(&token).expect("header");
            assert_eq!(header.alg, Algorithm::HS256);
        }
    });
    println!("{:<24} {header_ns:>8.0} ns", "  of which, one header");

    let compact_key = Hs256Key::new(SECRET);
    let time = TimeOptions::new(chrono::Duration::seconds(5), chrono::Utc::now);
    let compact_ns = median_ns(|| {
        for _ in 0..ITERATIONS {
            let untrusted = UntrustedToken::new(&token).expect("token");
            assert_eq!(untrusted.header().key_id.as_deref(), Some(kid.as_str()));
            let verified = Hs256
                .validator::<CustomClaims>(&compact_key)
                .validate(&untrusted)
                .expect("valid");
            let claims = verified.claims();
            claims.validate_expiration(&time).expect("unexpired");
            if claims.not_before.is_some() {
                claims.validate_maturity(&time).expect("mature");
            }
            let iat = claims.issued_at.expect("iat");
            assert!(iat <= chrono::Utc::now() + chrono::Duration::seconds(5));
            assert!(claims.custom.iss == ISSUER && claims.custom.aud == AUDIENCE);
        }
    });
    println!("{:<24} {compact_ns:>8.0} ns", "jwt-compact");
    Ok(())
}

/// Nanoseconds per verification: the median of [`RUNS`] timed runs of `run`.
fn median_ns(mut run: impl FnMut()) -> f64 {
    let mut per_call: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS)
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[RUNS / 2]
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
