//! Avatars on all three designs: the routes, their limits, and where the file lives. Stateful
//! keeps it on the replica's own disk; stateless and externalized in a real S3-compatible
//! object store (`s3s-fs`) every replica reaches.

use reqwest::{Method, StatusCode};
use statelab_formats::MAX_AVATAR_BYTES;

use crate::helpers::{for_every_design, spawn_app_with, Design, Options, Reply, TestApp, User};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR statelab avatar";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF statelab avatar";

for_every_design!(
    an_avatar_round_trips_and_bad_uploads_lose_nothing,
    another_replica_finds_the_avatar_only_where_files_are_shared,
);

async fn with_files(design: Design) -> TestApp {
    spawn_app_with(
        design,
        Options {
            files: true,
            ..Options::default()
        },
    )
    .await
}

/// `PUT /avatar` with `content_type` and `body`, as `user`.
async fn upload(user: &mut User<'_>, content_type: &str, body: Vec<u8>) -> Reply {
    let mut req = user
        .app
        .http
        .put(user.app.url("/avatar"))
        .header("content-type", content_type)
        .body(body);
    if let Some(c) = &user.credential {
        req = req.header("cookie", user.app.cookie(c));
    }
    user.app.request(req).await
}

/// The raw bytes and content type of a `GET`.
async fn image(
    app: &TestApp,
    path: &str,
    credential: Option<&str>,
) -> (StatusCode, String, Vec<u8>) {
    let mut req = app.http.get(app.url(path));
    if let Some(c) = credential {
        req = req.header("cookie", app.cookie(c));
    }
    let resp = req.send().await.expect("a GET");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ct, resp.bytes().await.expect("the body").to_vec())
}

async fn an_avatar_round_trips_and_bad_uploads_lose_nothing(design: Design) {
    let app = with_files(design).await;
    let mut ann = app.user();
    // No session: 401 before anything is read.
    upload(&mut ann, "image/png", PNG.to_vec())
        .await
        .assert_error(401, "unauthorized");
    ann.login("ann").await;
    ann.get("/avatar")
        .await
        .assert_error(404, "avatar_not_found");
    app.send(Method::GET, "/avatar/ann", None, None)
        .await
        .assert_error(404, "avatar_not_found");

    let stored = upload(&mut ann, "image/png", PNG.to_vec()).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
    assert_eq!(stored.body["username"], "ann");
    assert_eq!(stored.body["content_type"], "image/png");
    assert_eq!(stored.body["bytes"], PNG.len());
    assert_eq!(stored.body["replica"], app.replica.as_str());
    let credential = ann.credential.clone();
    for path in ["/avatar", "/avatar/ann"] {
        let (status, ct, bytes) = image(&app, path, credential.as_deref()).await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::OK, "image/png"),
            "{path}"
        );
        assert_eq!(bytes, PNG, "{path}");
    }

    // Refused uploads, each with its own status and code, and the stored avatar unchanged.
    upload(&mut ann, "image/gif", b"GIF89a".to_vec())
        .await
        .assert_error(415, "unsupported_media_type");
    upload(&mut ann, "application/json", b"{}".to_vec())
        .await
        .assert_error(415, "unsupported_media_type");
    upload(&mut ann, "image/png", JPEG.to_vec())
        .await
        .assert_error(400, "invalid_image");
    let mut big = PNG.to_vec();
    big.resize(MAX_AVATAR_BYTES + 1, 0);
    let refused = upload(&mut ann, "image/png", big).await;
    // Its body was never read: the connection closes, and the answer says so.
    assert_eq!(refused.header("connection"), Some("close"));
    refused.assert_error(413, "payload_too_large");
    let (_, ct, bytes) = image(&app, "/avatar/ann", None).await;
    assert_eq!((ct.as_str(), bytes.as_slice()), ("image/png", PNG));

    // The largest one fits; a JPEG replaces a PNG.
    let mut largest = PNG.to_vec();
    largest.resize(MAX_AVATAR_BYTES, 7);
    let ok = upload(&mut ann, "image/png", largest.clone()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(image(&app, "/avatar/ann", None).await.2, largest);
    let ok = upload(&mut ann, "image/jpeg; charset=binary", JPEG.to_vec()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let (_, ct, bytes) = image(&app, "/avatar", credential.as_deref()).await;
    assert_eq!((ct.as_str(), bytes.as_slice()), ("image/jpeg", JPEG));

    // Names, as the path carries them (percent-encoded), and methods.
    for bad in [
        "/avatar/%FF",
        "/avatar/%0A",
        &format!("/avatar/{}", "a".repeat(200)),
    ] {
        app.send(Method::GET, bad, None, None)
            .await
            .assert_error(400, "invalid_field");
    }
    let mut spaced = app.user();
    spaced.login("ann smith").await;
    let ok = upload(&mut spaced, "image/png", PNG.to_vec()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(image(&app, "/avatar/ann%20smith", None).await.2, PNG);
    app.send(Method::GET, "/avatar/bob", None, None)
        .await
        .assert_error(404, "avatar_not_found");
    let del = app.send(Method::DELETE, "/avatar", None, None).await;
    del.assert_error(405, "method_not_allowed");
    assert_eq!(del.header("allow"), Some("GET, PUT"));
    app.send(Method::PUT, "/avatar/ann", None, None)
        .await
        .assert_error(405, "method_not_allowed");
}

async fn another_replica_finds_the_avatar_only_where_files_are_shared(design: Design) {
    let first = with_files(design).await;
    let second = spawn_app_with(
        design,
        Options {
            files: true,
            shared: Some(first.shared()),
            ..Options::default()
        },
    )
    .await;
    let mut ann = first.user();
    ann.login("ann").await;
    let stored = upload(&mut ann, "image/png", PNG.to_vec()).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
    let (status, _, bytes) = image(&second, "/avatar/ann", None).await;
    match design {
        // The trap: the file is on the first replica's disk.
        Design::Stateful => assert_eq!(status, StatusCode::NOT_FOUND),
        Design::Stateless | Design::Externalized => {
            assert_eq!((status, bytes.as_slice()), (StatusCode::OK, PNG));
        }
    }
    // The first replica still has it, whatever the design.
    assert_eq!(image(&first, "/avatar/ann", None).await.2, PNG);
}

/// With the object store gone, the file routes answer `503 files_unavailable` and sessions keep
/// working; back, the files are there again.
async fn the_object_store_going_away_costs_files_not_sessions(design: Design) {
    let app = with_files(design).await;
    let store = app.objects.as_ref().expect("this app's object store");
    let mut ann = app.user();
    ann.login("ann").await;
    let ok = upload(&mut ann, "image/png", PNG.to_vec()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);

    store.kill();
    upload(&mut ann, "image/jpeg", JPEG.to_vec())
        .await
        .assert_error(503, "files_unavailable");
    app.send(Method::GET, "/avatar/ann", None, None)
        .await
        .assert_error(503, "files_unavailable");
    assert_eq!(ann.get("/me").await.status, StatusCode::OK);
    assert_eq!(ann.add("apple", 1).await.status, StatusCode::OK);

    assert!(store.restart().await, "the object store came back");
    assert_eq!(image(&app, "/avatar/ann", None).await.2, PNG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_loses_files_not_sessions_when_the_object_store_goes() {
    the_object_store_going_away_costs_files_not_sessions(Design::Stateless).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn externalized_loses_files_not_sessions_when_the_object_store_goes() {
    the_object_store_going_away_costs_files_not_sessions(Design::Externalized).await;
}

/// Without a file store configured, the routes answer `503` and say so; sessions work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_file_store_is_503() {
    let app = spawn_app_with(Design::Stateless, Options::default()).await;
    let mut ann = app.user();
    ann.login("ann").await;
    upload(&mut ann, "image/png", PNG.to_vec())
        .await
        .assert_error(503, "files_unavailable");
    assert_eq!(ann.get("/me").await.status, StatusCode::OK);
}
