//! What only the JWT design does: every design of bad token is simply no session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{decode_header, encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Design, TestApp, TEST_SECRET};

async fn token_for(app: &TestApp) -> String {
    let mut u = app.user();
    u.login("alice").await;
    u.add("apple", 1).await;
    u.credential.expect("token")
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json")
}

#[tokio::test]
async fn the_token_carries_the_session() {
    let app = spawn_app(Design::Stateless).await;
    let token = token_for(&app).await;
    let header = decode_header(&token).expect("header");
    assert_eq!(header.alg, Algorithm::HS256);
    assert!(
        header.kid.is_some(),
        "kid lets replicas verify with a previous key during rotation"
    );
    let claims = claims_of(&token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["cart"]["apple"], 1);
    for claim in ["exp", "iat", "iss", "aud", "jti"] {
        assert!(!claims[claim].is_null(), "{claim} in {claims}");
    }
}

#[tokio::test]
async fn forged_tokens_are_401() {
    let app = spawn_app(Design::Stateless).await;
    let token = token_for(&app).await;
    let parts: Vec<&str> = token.split('.').collect();
    let kid = decode_header(&token).expect("header").kid.expect("kid");

    // More apples than were paid for: the payload changed, the signature did not.
    let mut claims = claims_of(&token);
    claims["cart"]["apple"] = json!(1000);
    let tampered_payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = format!("{}.{}.{}", parts[0], tampered_payload, parts[2]);

    // `alg: none`, unsigned.
    let none_header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string());
    let unsigned = format!("{none_header}.{}.", parts[1]);

    // Signed correctly, but with another key claiming our key's id.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.clone());
    let wrong_key = encode(
        &header,
        &claims,
        &EncodingKey::from_secret(b"another-secret-another-secret-12"),
    )
    .expect("encode");

    // Signed with our key but for someone else (wrong audience, wrong issuer).
    let ours = EncodingKey::from_secret(TEST_SECRET);
    let mut other_aud = claims.clone();
    other_aud["aud"] = json!("someone-else");
    let other_aud = encode(&header, &other_aud, &ours).expect("encode");
    let mut other_iss = claims.clone();
    other_iss["iss"] = json!("someone-else");
    let other_iss = encode(&header, &other_iss, &ours).expect("encode");

    // HS384 with our key: only HS256 is accepted.
    let mut hs384 = Header::new(Algorithm::HS384);
    hs384.kid = Some(kid);
    let hs384 = encode(&hs384, &claims, &ours).expect("encode");

    // Expired an hour ago.
    let mut old = claims.clone();
    old["exp"] = json!(claims["iat"].as_u64().expect("iat") - 3600);
    let expired = encode(&header, &old, &ours).expect("encode");

    let truncated = &token[..token.len() - 5];
    let cases = [
        ("tampered payload", tampered.as_str()),
        ("alg none", unsigned.as_str()),
        ("wrong key", wrong_key.as_str()),
        ("wrong audience", other_aud.as_str()),
        ("wrong issuer", other_iss.as_str()),
        ("HS384", hs384.as_str()),
        ("expired", expired.as_str()),
        ("truncated", truncated),
        ("two parts", &format!("{}.{}", parts[0], parts[1])),
    ];
    for (what, bad) in cases {
        let r = app.send(Method::GET, "/cart", None, Some(bad)).await;
        assert_eq!(r.status.as_u16(), 401, "{what}: {}", r.text);
        r.assert_error(401, "unauthorized");
    }
    // The genuine token still works.
    let r = app.send(Method::GET, "/cart", None, Some(&token)).await;
    assert_eq!(r.status.as_u16(), 200);
}

#[tokio::test]
async fn every_change_reissues_the_token() {
    let app = spawn_app(Design::Stateless).await;
    let mut u = app.user();
    u.login("alice").await;
    let t1 = u.credential.clone().expect("token");
    let r = u.add("apple", 2).await;
    let t2 = u.credential.clone().expect("token");
    assert_ne!(t1, t2);
    assert_eq!(r.header("x-session-token"), Some(t2.as_str()));
    assert_eq!(claims_of(&t2)["cart"]["apple"], 2);
    assert!(
        claims_of(&t1)["cart"]["apple"].is_null(),
        "the old token still says what it said"
    );
}

/// The Python interpreter that imports PyJWT: `STATELAB_PYTHON` when set (`scripts/test` sets it to
/// the one its prerequisite step checked), else `python3` on `PATH`, else Debian's own
/// `/usr/bin/python3`, where Debian's `python3-jwt` installs. Fails naming each one tried when none
/// imports it.
fn python_with_pyjwt() -> String {
    let candidates = match std::env::var("STATELAB_PYTHON") {
        Ok(python) => vec![python],
        Err(_) => vec!["python3".to_owned(), "/usr/bin/python3".to_owned()],
    };
    let imports = |python: &String| {
        std::process::Command::new(python)
            .args(["-c", "import jwt"])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    candidates
        .iter()
        .find(|p| imports(p))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
            "PyJWT (module jwt) is not importable from any of {candidates:?}: run scripts/test, \
             which installs it, or `apt-get install -y python3-jwt`, or set STATELAB_PYTHON to an \
             interpreter that has it"
        )
        })
}

/// Runs PyJWT (a JWT library written elsewhere) with `args`: `sign KID CLAIMS` prints a token it
/// signed with the test secret, `verify TOKEN` prints the claims of a token it accepted with the
/// same checks the service runs.
fn pyjwt(args: &[&str]) -> String {
    const SCRIPT: &str = r#"
import json, sys, jwt
secret = sys.argv[1].encode()
if sys.argv[2] == "sign":
    print(jwt.encode(json.loads(sys.argv[4]), secret, algorithm="HS256", headers={"kid": sys.argv[3]}))
else:
    print(json.dumps(jwt.decode(sys.argv[3], secret, algorithms=["HS256"], audience="statelab-services",
        issuer="statelab", options={"require": ["exp", "iat", "iss", "aud", "sub"]})))
"#;
    let secret = std::str::from_utf8(TEST_SECRET).expect("an ASCII test secret");
    let out = std::process::Command::new(python_with_pyjwt())
        .args(["-c", SCRIPT, secret])
        .args(args)
        .output()
        .expect("the interpreter that imported jwt runs");
    assert!(
        out.status.success(),
        "PyJWT {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn tokens_interoperate_with_pyjwt() {
    let app = spawn_app(Design::Stateless).await;
    let token = token_for(&app).await;

    // Ours verifies there, with every check on.
    let claims: Value = serde_json::from_str(&pyjwt(&["verify", &token])).expect("claims");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["cart"]["apple"], 1);

    // And a token PyJWT signed with the shared secret is a session here.
    let kid = decode_header(&token).expect("header").kid.expect("kid");
    let iat = claims["iat"].as_u64().expect("iat");
    let theirs = json!({
        "iss": "statelab", "aud": "statelab-services", "sub": "bob", "iat": iat,
        "exp": iat + 600, "jti": "pyjwt-1", "ctm": iat * 1000, "req": 3, "cart": {"pear": 2},
    });
    let theirs = pyjwt(&["sign", &kid, &theirs.to_string()]);
    let r = app.send(Method::GET, "/cart", None, Some(&theirs)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(
        r.body["items"],
        json!([{"sku": "pear", "qty": 2}]),
        "{}",
        r.text
    );
    let r = app.send(Method::GET, "/me", None, Some(&theirs)).await;
    assert_eq!(r.body["username"], "bob", "{}", r.text);
}
