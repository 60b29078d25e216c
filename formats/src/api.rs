//! The bodies of the services' HTTP API, written and read by the services, the load generator
//! and the tests, and the one error body every part of statelab answers with. Their strings are
//! `Cow`s: a writer borrows (the services write `/me` on their hot path without an allocation),
//! a reader owns.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// `POST /login`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login<'a> {
    pub username: Cow<'a, str>,
}

/// `POST /cart/items`'s body. `qty` is read as any integer so that an out-of-range one gets the
/// services' own message rather than a parse error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddItem<'a> {
    pub sku: Cow<'a, str>,
    pub qty: i64,
}

/// The answer of `GET /me` and `POST /login`: whose session, on which replica, how old, and, for
/// the JWT design's login, the token for clients that cannot keep cookies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me<'a> {
    pub username: Cow<'a, str>,
    pub replica: Cow<'a, str>,
    pub session_age_ms: u64,
    pub requests_in_session: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Cow<'a, str>>,
}

impl AddItem<'_> {
    /// The body as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // A string and an integer always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Login<'_> {
    /// The body as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The largest avatar `PUT /avatar` takes, in bytes.
pub const MAX_AVATAR_BYTES: usize = 256 * 1024;

/// An avatar's image type: what `PUT /avatar` accepts, by its `Content-Type` and its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageType {
    Png,
    Jpeg,
}

impl ImageType {
    pub const ALL: [ImageType; 2] = [ImageType::Png, ImageType::Jpeg];

    /// The media type it is sent and served with.
    pub fn content_type(self) -> &'static str {
        match self {
            ImageType::Png => "image/png",
            ImageType::Jpeg => "image/jpeg",
        }
    }

    /// The type a `Content-Type` value names (parameters and case aside), if it is one of ours.
    pub fn from_content_type(value: &str) -> Option<ImageType> {
        let media = value.split(';').next().unwrap_or("").trim();
        ImageType::ALL
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(media))
    }

    /// Whether `bytes` begin as a file of this type does (PNG's 8-byte signature, JPEG's start of
    /// image marker).
    pub fn matches(self, bytes: &[u8]) -> bool {
        match self {
            ImageType::Png => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            ImageType::Jpeg => bytes.starts_with(&[0xff, 0xd8, 0xff]),
        }
    }
}

/// The answer of `PUT /avatar`: whose avatar was stored, of which type, how many bytes, and
/// which replica stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvatarStored {
    pub username: String,
    pub content_type: String,
    pub bytes: u64,
    pub replica: String,
}

/// Every error answer: the services', the proxy's own (no replica, a bad request, a timeout) and
/// the admin API's. `error` is a stable code (`unauthorized`, `bad_gateway`, ...), `message` a
/// sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: error.into(),
            message: message.into(),
        }
    }

    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        // A struct of two strings always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A cart as the services answer it: `GET /cart`, `POST /cart/items`, and within the checkout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartView {
    /// One line per SKU, in SKU order.
    pub items: Vec<CartLine>,
    pub total_qty: u64,
}

/// One line of a [`CartView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub sku: String,
    pub qty: u64,
}

impl CartView {
    /// The cart of `(sku, qty)` lines, its total counted.
    pub fn new<'a>(lines: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let items: Vec<CartLine> = lines
            .into_iter()
            .map(|(sku, qty)| CartLine {
                sku: sku.to_owned(),
                qty,
            })
            .collect();
        let total_qty = items.iter().map(|l| l.qty).sum();
        CartView { items, total_qty }
    }
}

/// `POST /checkout`: the cart taken, its order id and whose it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    #[serde(flatten)]
    pub cart: CartView,
    pub order_id: String,
    pub username: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_keep_their_wire_shape() {
        let error = ErrorBody::new("unauthorized", "no session");
        assert_eq!(
            error.to_json(),
            r#"{"error":"unauthorized","message":"no session"}"#
        );
        let checkout = Checkout {
            cart: CartView::new([("apple", 2), ("fig", 1)]),
            order_id: "o-1".into(),
            username: "ann".into(),
        };
        let json = serde_json::to_value(&checkout).expect("serialise");
        assert_eq!(
            json,
            serde_json::json!({"items": [{"sku": "apple", "qty": 2}, {"sku": "fig", "qty": 1}],
                "total_qty": 3, "order_id": "o-1", "username": "ann"})
        );
        let cart: CartView = serde_json::from_value(json).expect("a checkout reads as its cart");
        assert_eq!(cart, checkout.cart);

        let add = AddItem {
            sku: "a\"b".into(),
            qty: 3,
        };
        assert_eq!(add.to_json(), br#"{"sku":"a\"b","qty":3}"#);
        let back: AddItem<'_> = serde_json::from_slice(&add.to_json()).expect("parse");
        assert_eq!(back, add);
        let me: Me<'_> = serde_json::from_str(
            r#"{"username":"ann","replica":"r-1","session_age_ms":5,"requests_in_session":2}"#,
        )
        .expect("parse");
        assert_eq!((me.username.as_ref(), me.token), ("ann", None));
    }

    #[test]
    fn image_types_are_told_by_their_media_type_and_first_bytes() {
        assert_eq!(
            ImageType::from_content_type("image/png"),
            Some(ImageType::Png)
        );
        assert_eq!(
            ImageType::from_content_type("IMAGE/JPEG; q=1"),
            Some(ImageType::Jpeg)
        );
        assert_eq!(ImageType::from_content_type("image/gif"), None);
        assert_eq!(ImageType::from_content_type(""), None);
        assert!(ImageType::Png.matches(b"\x89PNG\r\n\x1a\n rest"));
        assert!(!ImageType::Png.matches(b"\xff\xd8\xff\xe0"));
        assert!(ImageType::Jpeg.matches(b"\xff\xd8\xff\xe0"));
        assert!(!ImageType::Jpeg.matches(b"GIF89a"));
    }
}

/// The longest text a chat message may carry, in bytes.
pub const MAX_CHAT_TEXT: usize = 1000;
/// The longest message id a client may give, in bytes.
pub const MAX_CHAT_ID: usize = 64;
/// How many of a room's latest messages a socket is sent when it joins.
pub const CHAT_HISTORY: usize = 50;
/// The longest room name `GET /chat/{room}` takes: letters, digits, `.`, `_` and `-`.
pub const MAX_ROOM_LEN: usize = 64;

/// What a client sends on a chat socket, as one text frame: its own id for the message (echoed
/// back, so a client can tell its messages and count what arrived) and the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSend<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub text: Cow<'a, str>,
}

/// What a chat socket receives, one text frame per message: who said it in which room, the
/// sender's id for it, the replica that took it and when (Unix ms), and whether it is part of the
/// history replayed on joining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub room: String,
    pub from: String,
    pub id: String,
    pub text: String,
    pub replica: String,
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub history: bool,
}

/// Whether `room` names a chat room: 1 to [`MAX_ROOM_LEN`] letters, digits, `.`, `_` or `-`.
pub fn is_room_name(room: &str) -> bool {
    (1..=MAX_ROOM_LEN).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
