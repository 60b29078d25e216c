//! Avatars as objects in an S3-compatible store, over plain HTTP with presigned requests.
//!
//! rusty-s3 signs (SigV4, no I/O of its own); the requests go out on hyper's client, which the
//! services already build on. A bucket that does not exist yet is created on the first store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rusty_s3::actions::{CreateBucket, GetObject, PutObject, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use statelab_formats::{ImageType, MAX_AVATAR_BYTES};

use super::{object_name, Avatar, FileError};

/// How long one request to the object store may take before the file route answers `503`: below
/// a client's own timeout (the load generator's is 2 s), so the client hears the `503`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a connection to the object store may take: a store that is gone behind a network that
/// drops its packets (a killed container) is told from a slow one at once.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a presigned request stays valid: it is sent at once.
const SIGNED_FOR: Duration = Duration::from_secs(60);

/// Where the object store is and how to sign for it.
#[derive(Clone)]
pub struct S3Config {
    /// The store's base URL, e.g. `http://127.0.0.1:9000`.
    pub endpoint: url::Url,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint.as_str())
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// Avatars in one bucket of an S3-compatible store.
pub struct S3Files {
    bucket: Bucket,
    credentials: Credentials,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The bucket is known to exist (created or found).
    bucket_ready: AtomicBool,
}

impl std::fmt::Debug for S3Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Files")
            .field("bucket", &self.bucket.name())
            .field("endpoint", &self.bucket.base_url().as_str())
            .finish_non_exhaustive()
    }
}

impl S3Files {
    pub fn new(config: S3Config) -> anyhow::Result<Self> {
        let bucket = Bucket::new(
            config.endpoint.clone(),
            UrlStyle::Path,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| anyhow::anyhow!("object store bucket {:?}: {e}", config.bucket))?;
        Ok(S3Files {
            bucket,
            credentials: Credentials::new(config.access_key, config.secret_key),
            client: Client::builder(TokioExecutor::new()).build({
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
                connector
            }),
            bucket_ready: AtomicBool::new(false),
        })
    }

    /// Sends one signed request and reads the answer (at most the largest avatar and a little).
    async fn send(
        &self,
        method: Method,
        url: url::Url,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<(StatusCode, Option<String>, Bytes), FileError> {
        let mut req = Request::builder().method(method).uri(url.as_str());
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| FileError::Unavailable(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| FileError::Unavailable(format!("object store: {e}")))?;
            let status = resp.status();
            let content_type = resp
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = Limited::new(resp.into_body(), MAX_AVATAR_BYTES + 64 * 1024)
                .collect()
                .await
                .map_err(|e| FileError::Unavailable(format!("object store answer: {e}")))?
                .to_bytes();
            Ok((status, content_type, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                FileError::Unavailable(format!(
                    "object store: no answer within {} ms",
                    REQUEST_TIMEOUT.as_millis()
                ))
            })?
    }

    async fn create_bucket(&self) -> Result<(), FileError> {
        let url = CreateBucket::new(&self.bucket, &self.credentials).sign(SIGNED_FOR);
        let (status, _, body) = self.send(Method::PUT, url, None, Bytes::new()).await?;
        // Created, or there already (another replica was first).
        if status.is_success() || status == StatusCode::CONFLICT {
            self.bucket_ready.store(true, Ordering::Relaxed);
            return Ok(());
        }
        Err(refused("create the bucket", status, &body))
    }

    pub async fn put(&self, username: &str, avatar: &Avatar) -> Result<(), FileError> {
        if !self.bucket_ready.load(Ordering::Relaxed) {
            self.create_bucket().await?;
        }
        let key = object_name(username);
        let url = PutObject::new(&self.bucket, Some(&self.credentials), &key).sign(SIGNED_FOR);
        let content_type = Some(avatar.image.content_type());
        let (status, _, body) = self
            .send(Method::PUT, url, content_type, avatar.bytes.clone())
            .await?;
        if status.is_success() {
            return Ok(());
        }
        Err(refused("store the avatar", status, &body))
    }

    pub async fn get(&self, username: &str) -> Result<Option<Avatar>, FileError> {
        let key = object_name(username);
        let url = GetObject::new(&self.bucket, Some(&self.credentials), &key).sign(SIGNED_FOR);
        let (status, content_type, body) = self.send(Method::GET, url, None, Bytes::new()).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(refused("read the avatar", status, &body));
        }
        let image = content_type
            .as_deref()
            .and_then(ImageType::from_content_type)
            .or_else(|| ImageType::ALL.into_iter().find(|t| t.matches(&body)))
            .ok_or_else(|| FileError::Unavailable("the stored object is not an image".into()))?;
        Ok(Some(Avatar { image, bytes: body }))
    }
}

fn refused(what: &str, status: StatusCode, body: &[u8]) -> FileError {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    FileError::Unavailable(format!("object store: could not {what}: {status} {text}"))
}
