//! The object store `s3`: a stateless user's avatar goes in through the proxy and reads back the
//! same; with the store killed the avatar answers 503 `files_unavailable` while the session and
//! the cart go on; started again, the store still has the file (its named volume).

use std::time::Duration;

use statelab_formats::{Design, ImageType};

use crate::checks::{poll, Checks, POLL_EVERY};
use crate::http::{Answer, Shopper};
use crate::lab::E2eLab;

/// The object store's part name.
const S3: &str = "s3";

/// A small PNG: the signature, then some bytes (the services check only the signature).
const AVATAR: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR statelab docker avatar";

/// How long the store may take to go away or come back, as seen through the proxy.
const WITHIN: Duration = Duration::from_secs(30);

/// The avatar answer is 200 with the uploaded bytes as a PNG.
fn is_the_avatar(answer: &Answer) -> bool {
    answer.is(200)
        && answer.bytes == AVATAR
        && answer.content_type.as_deref() == Some(ImageType::Png.content_type())
}

/// What an avatar answer was, for a FAIL line.
fn shown(answer: &Answer) -> String {
    let body = if answer.is(200) {
        format!("{} bytes", answer.bytes.len())
    } else {
        answer.body.clone()
    };
    format!(
        "{} ({}) from {}: {body}",
        answer.code(),
        answer.content_type.as_deref().unwrap_or("no content-type"),
        answer.replica()
    )
}

/// Asks for the avatar at `path` until `want` holds of the answer, for at most [`WITHIN`]: that
/// answer, or the last one.
async fn avatar_until(
    user: &Shopper,
    path: &str,
    want: fn(&Answer) -> bool,
) -> Result<Answer, Answer> {
    let seen = poll(WITHIN, POLL_EVERY, || async {
        let answer = user.get(path).await;
        want(&answer).then_some(answer)
    })
    .await;
    match seen {
        Some(answer) => Ok(answer),
        None => Err(user.get(path).await),
    }
}

/// 503 with the error code `files_unavailable`.
fn is_unavailable(answer: &Answer) -> bool {
    answer.is(503) && answer.error().as_deref() == Some("files_unavailable")
}

/// The `s3` part up and healthy in `scripts/lab status`.
async fn store_healthy(lab: &E2eLab) -> bool {
    let Some(status) = lab.status().await else {
        return false;
    };
    status
        .parts
        .iter()
        .any(|p| p.name == S3 && p.up && p.health.as_deref() == Some("healthy"))
}

/// Upload, read back, the store killed (503 `files_unavailable`, the session unharmed), started
/// again (the avatar back).
pub async fn avatars(lab: &E2eLab, checks: &Checks) {
    let design = Design::Stateless;
    checks.check(
        "s3: scripts/lab status shows the object store up and healthy",
        store_healthy(lab).await,
        "no part s3 up and healthy in scripts/lab status",
    );
    let user = Shopper::new("avatar-user", &lab.proxy_url());
    let login = user.login(design).await;
    let add = user.add(design, "apple", 1).await;
    if !checks.check(
        format!("{design}: the avatar user logs in and adds to the cart"),
        login.is(200) && add.is(200),
        format!("got {} and {}", login.summary(), add.summary()),
    ) {
        return;
    }
    let put = user.put_avatar(design, ImageType::Png, AVATAR).await;
    if !checks.check(
        format!("{design}: PUT /avatar stores a PNG ({})", put.summary()),
        put.is(200),
        format!("got {}: {}", put.code(), put.body),
    ) {
        return;
    }
    let path = format!("/{design}/avatar/{}", user.name);
    let read = user.get(&path).await;
    checks.check(
        format!(
            "{design}: GET /avatar/{} reads back the same bytes",
            user.name
        ),
        is_the_avatar(&read),
        shown(&read),
    );

    let killed = lab.kill(S3).await;
    checks.check(
        "scripts/lab kill s3",
        killed.as_ref().is_ok_and(|k| k.killed == S3),
        format!("{killed:?}"),
    );
    let unavailable = avatar_until(&user, &path, is_unavailable).await;
    checks.check(
        format!("{design}: with s3 down, the avatar answers 503 files_unavailable"),
        unavailable.is_ok(),
        format!(
            "not within {WITHIN:?}; last: {}",
            unavailable.as_ref().map_or_else(shown, shown)
        ),
    );
    let me = user.get(&format!("/{design}/me")).await;
    let cart = user.get(&format!("/{design}/cart")).await;
    checks.check(
        format!("{design}: with s3 down, the session and the cart still answer"),
        me.is(200)
            && me.username().as_deref() == Some(user.name.as_str())
            && cart.qty("apple") == Some(1),
        format!(
            "GET /me {} as {:?}, GET /cart {} with apples {:?}",
            me.summary(),
            me.username(),
            cart.summary(),
            cart.qty("apple")
        ),
    );

    let started = lab.start(S3).await;
    checks.check(
        "scripts/lab start s3",
        started.as_ref().is_ok_and(|st| st.started == S3),
        format!("{started:?}"),
    );
    let back = avatar_until(&user, &path, is_the_avatar).await;
    checks.check(
        format!("{design}: s3 started again, the avatar is back, the same bytes"),
        back.is_ok(),
        format!(
            "not within {WITHIN:?}; last: {}",
            back.as_ref().map_or_else(shown, shown)
        ),
    );
}
