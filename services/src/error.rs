//! The one error type of the request path.
//!
//! Every failure a client can cause or see is an [`ApiError`]; [`ApiError::status`] and
//! [`ApiError::code`] decide what the client is told. Store failures carry their detail only to
//! the log: a client learns that the store is down, never why.

use hyper::StatusCode;

use crate::session::StoreError;

/// A request that could not be served, and why, in terms a client may see.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("no valid session: log in first")]
    Unauthorized,
    #[error("no such route")]
    NotFound,
    #[error("method not allowed; this route accepts {0}")]
    MethodNotAllowed(&'static str),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    #[error("the cart is empty")]
    EmptyCart,
    #[error("the cart is full: at most {lines} different items and {qty} of each", lines = crate::session::MAX_CART_LINES, qty = crate::session::MAX_LINE_QTY)]
    CartFull,
    #[error("the session store is unavailable; try again shortly")]
    StoreUnavailable,
    #[error("this replica holds as many sessions as it may; existing sessions keep working, new logins are refused until sessions end")]
    SessionCapacity,
    #[error("the session store is full; existing sessions keep working, new logins are refused until sessions end")]
    StoreFull,
    #[error("could not read the request")]
    BadRequestBody,
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("no avatar for this user here")]
    AvatarNotFound,
    #[error("the body is not the image its Content-Type names")]
    InvalidImage,
    #[error("files are unavailable; sessions keep working")]
    FilesUnavailable,
    #[error("this route is a WebSocket: send GET with Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key")]
    UpgradeRequired,
    #[error("chat is unavailable; sessions keep working")]
    ChatUnavailable,
    #[error("this replica holds as many chat sockets or rooms as it may; try again later")]
    ChatCapacity,
}

/// The message of a JSON route's `415`.
pub const JSON_ONLY: &str =
    "the request body must be JSON, sent with Content-Type: application/json";
/// The message of `PUT /avatar`'s `415`.
pub const IMAGES_ONLY: &str = "an avatar is image/png or image/jpeg, named in Content-Type";

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) | ApiError::InvalidField(_) | ApiError::BadRequestBody => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::AvatarNotFound => StatusCode::NOT_FOUND,
            ApiError::InvalidImage => StatusCode::BAD_REQUEST,
            ApiError::FilesUnavailable | ApiError::ChatUnavailable | ApiError::ChatCapacity => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            ApiError::EmptyCart => StatusCode::CONFLICT,
            ApiError::CartFull => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::StoreUnavailable | ApiError::SessionCapacity | ApiError::StoreFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// Stable machine-readable code for the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::BadRequestBody => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::AvatarNotFound => "avatar_not_found",
            ApiError::InvalidImage => "invalid_image",
            ApiError::FilesUnavailable => "files_unavailable",
            ApiError::UpgradeRequired => "upgrade_required",
            ApiError::ChatUnavailable => "chat_unavailable",
            ApiError::ChatCapacity => "chat_capacity",
            ApiError::EmptyCart => "empty_cart",
            ApiError::CartFull => "cart_full",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::SessionCapacity => "session_capacity",
            ApiError::StoreFull => "store_full",
            ApiError::RequestTimeout => "request_timeout",
        }
    }
}

impl From<crate::files::FileError> for ApiError {
    fn from(e: crate::files::FileError) -> Self {
        tracing::warn!(detail = %e, "files unavailable");
        ApiError::FilesUnavailable
    }
}

impl From<crate::chat::ChatError> for ApiError {
    fn from(e: crate::chat::ChatError) -> Self {
        match e {
            crate::chat::ChatError::Full => ApiError::ChatCapacity,
            crate::chat::ChatError::Unavailable(detail) => {
                tracing::warn!(%detail, "chat unavailable");
                ApiError::ChatUnavailable
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CartFull => ApiError::CartFull,
            // The store logs reaching its cap once; a line per refused login would flood the log.
            StoreError::AtCapacity(_) => ApiError::SessionCapacity,
            StoreError::Full(_) => ApiError::StoreFull,
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "session store unavailable");
                ApiError::StoreUnavailable
            }
        }
    }
}
