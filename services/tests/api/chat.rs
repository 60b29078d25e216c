//! Chat rooms on all three designs, over real WebSockets: the handshake's refusals, a message
//! round trip, and who shares a room with whom. A room in a replica's memory (stateful; stateless
//! without a broker) is a different room on another replica; through a Redis broker (externalized;
//! stateless with one) it is one room on every replica, and a socket that joins is sent its
//! recent history.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use statelab_formats::{ChatMessage, ErrorBody};
use statelab_test_support::RedisServer;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::helpers::{for_every_design, spawn_app, spawn_app_with, Design, Options, TestApp, User};

for_every_design!(
    a_socket_needs_a_session_and_a_handshake_and_echoes_what_it_says,
    rooms_of_one_name_on_two_replicas_are_one_room_only_through_a_broker,
);

/// How long a message may take to arrive.
const DELIVERY: Duration = Duration::from_secs(5);

type Socket = WebSocketStream<TcpStream>;

/// Opens `GET /chat/{room}` as `user` (its cookie, if any): the socket, or the refusal's status
/// and JSON body.
async fn open(
    app: &TestApp,
    room: &str,
    credential: Option<&str>,
) -> Result<Socket, (u16, ErrorBody)> {
    let mut request = format!("ws://{}/chat/{room}", app.addr)
        .into_client_request()
        .expect("a request");
    if let Some(c) = credential {
        request.headers_mut().insert(
            "cookie",
            HeaderValue::from_str(&app.cookie(c)).expect("a header"),
        );
    }
    let tcp = TcpStream::connect(app.addr).await.expect("connect");
    match tokio_tungstenite::client_async(request, tcp).await {
        Ok((socket, response)) => {
            assert_eq!(response.status(), 101);
            Ok(socket)
        }
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().clone().unwrap_or_default();
            let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "a JSON error body ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            });
            Err((status, error))
        }
        Err(e) => panic!("the handshake failed without an answer: {e}"),
    }
}

/// The next text frame, within [`DELIVERY`].
async fn next_text(socket: &mut Socket) -> String {
    loop {
        let frame = tokio::time::timeout(DELIVERY, socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return text.as_str().to_owned();
        }
    }
}

async fn next_message(socket: &mut Socket) -> ChatMessage {
    let text = next_text(socket).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("a chat message ({e}): {text}"))
}

async fn say(socket: &mut Socket, id: &str, text: &str) {
    let frame = serde_json::json!({"id": id, "text": text}).to_string();
    socket.send(Message::text(frame)).await.expect("sent");
}

async fn logged_in<'a>(app: &'a TestApp, name: &str) -> User<'a> {
    let mut user = app.user();
    assert_eq!(user.login(name).await.status, StatusCode::OK);
    user
}

async fn a_socket_needs_a_session_and_a_handshake_and_echoes_what_it_says(design: Design) {
    let app = spawn_app(design).await;
    let alice = logged_in(&app, "alice").await;
    let cookie = alice.credential.clone();

    let refused = open(&app, "lobby", None).await.expect_err("no session");
    assert_eq!((refused.0, refused.1.error.as_str()), (401, "unauthorized"));
    let plain = app
        .send(reqwest::Method::GET, "/chat/lobby", None, cookie.as_deref())
        .await;
    plain.assert_error(426, "upgrade_required");
    let bad = open(&app, "no%20spaces", cookie.as_deref())
        .await
        .expect_err("a bad room name");
    assert_eq!((bad.0, bad.1.error.as_str()), (400, "invalid_field"));

    let mut socket = open(&app, "lobby", cookie.as_deref())
        .await
        .expect("a socket");
    say(&mut socket, "m1", "hello").await;
    let echo = next_message(&mut socket).await;
    assert_eq!(
        (
            echo.room.as_str(),
            echo.from.as_str(),
            echo.id.as_str(),
            echo.text.as_str()
        ),
        ("lobby", "alice", "m1", "hello")
    );
    assert_eq!(echo.replica, app.replica);
    assert!(!echo.history);

    // What a client sends wrong is answered on the socket, which stays open.
    socket.send(Message::text("not json")).await.expect("sent");
    let error: ErrorBody = serde_json::from_str(&next_text(&mut socket).await).expect("an error");
    assert_eq!(error.error, "invalid_message");
    say(&mut socket, "", "no id").await;
    let error: ErrorBody = serde_json::from_str(&next_text(&mut socket).await).expect("an error");
    assert_eq!(error.error, "invalid_message");
    say(&mut socket, "m2", &"x".repeat(1001)).await;
    let error: ErrorBody = serde_json::from_str(&next_text(&mut socket).await).expect("an error");
    assert_eq!(error.error, "invalid_message");
    say(&mut socket, "m3", "still here").await;
    assert_eq!(next_message(&mut socket).await.id, "m3");
    socket.close(None).await.expect("closed");

    // A frame over 4 KiB ends the socket: nothing more is read from it.
    let mut big = open(&app, "lobby", cookie.as_deref())
        .await
        .expect("a socket");
    assert_eq!(next_message(&mut big).await.id, "m1", "the history first");
    assert_eq!(next_message(&mut big).await.id, "m3");
    let frame = serde_json::json!({"id": "big", "text": "x".repeat(5000)}).to_string();
    big.send(Message::text(frame)).await.expect("sent");
    let ended = tokio::time::timeout(DELIVERY, async {
        loop {
            match big.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the socket ended after an oversized frame");
}

/// Two replicas of `design`, sharing what the design shares, and for stateless a broker when
/// `broker` names one.
async fn two_replicas(design: Design, broker: Option<String>) -> (TestApp, TestApp) {
    let options = Options {
        chat_broker: broker,
        ..Options::default()
    };
    let first = spawn_app_with(design, options.clone()).await;
    let second = spawn_app_with(
        design,
        Options {
            shared: Some(first.shared()),
            ..options
        },
    )
    .await;
    (first, second)
}

/// Alice on the first replica says something; Bob on the second, in a room of the same name,
/// hears it or not. Bob's own message comes back to him either way: the first message he hears
/// tells which.
async fn bob_hears_alice(first: &TestApp, second: &TestApp, room: &str) -> bool {
    // Stateless tokens verify on every replica; the others log in where they chat.
    let alice = logged_in(first, "alice").await;
    let bob = logged_in(second, "bob").await;
    let mut a = open(first, room, alice.credential.as_deref())
        .await
        .expect("alice's socket");
    let mut b = open(second, room, bob.credential.as_deref())
        .await
        .expect("bob's socket");
    say(&mut a, "a1", "hi bob").await;
    assert_eq!(next_message(&mut a).await.id, "a1", "alice hears herself");
    say(&mut b, "b1", "hi alice").await;
    let heard = next_message(&mut b).await;
    if heard.id == "a1" {
        assert_eq!(heard.from, "alice");
        assert_eq!(next_message(&mut b).await.id, "b1");
        assert_eq!(next_message(&mut a).await.id, "b1", "and alice hears bob");
        true
    } else {
        assert_eq!(heard.id, "b1");
        false
    }
}

async fn rooms_of_one_name_on_two_replicas_are_one_room_only_through_a_broker(design: Design) {
    // Without a broker (stateful always; stateless by default) each replica's room is its own.
    if design != Design::Externalized {
        let (first, second) = two_replicas(design, None).await;
        assert!(
            !bob_hears_alice(&first, &second, "split").await,
            "{design}: a room in memory is one replica's"
        );
    }
    if design == Design::Stateful {
        return;
    }
    // Through a broker (externalized: its own Redis; stateless: one given to it) they share it.
    let broker = RedisServer::start().await;
    let (first, second) = two_replicas(design, Some(broker.url())).await;
    assert!(
        bob_hears_alice(&first, &second, "shared").await,
        "{design}: the broker joins the replicas' rooms"
    );
    // A socket that joins later, on either replica, is sent the room's history, oldest first.
    let carol = logged_in(&second, "carol").await;
    let mut c = open(&second, "shared", carol.credential.as_deref())
        .await
        .expect("carol's socket");
    let history: Vec<(String, bool)> = [next_message(&mut c).await, next_message(&mut c).await]
        .into_iter()
        .map(|m| (m.id, m.history))
        .collect();
    assert_eq!(history, [("a1".into(), true), ("b1".into(), true)]);
}
