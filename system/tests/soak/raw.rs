//! A raw client connection, for the clients the generator's client cannot play: exact bytes
//! out (requests built by hand, bad ones included), answers read with the generator's own wire
//! parser, and a reset or an early end of the stream told apart from a clean close.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use statelab_load::wire::{self, BodyEnd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::lab::json_error_code;
use crate::REQUEST_TIMEOUT;

/// An answer read from a raw connection.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub close: bool,
    pub body: Bytes,
}

impl RawAnswer {
    /// `Ok` when this is the documented JSON error: this status, this `error` code and a message.
    pub fn expect_error(&self, status: u16, code: &str) -> Result<(), Wrong> {
        let got = json_error_code(&self.body);
        if self.status == status && got.as_deref() == Some(code) {
            Ok(())
        } else {
            Err(Wrong {
                text: format!(
                    "wanted {status} {code}, got {} {:?}",
                    self.status,
                    String::from_utf8_lossy(&self.body)
                ),
                bad_gateway: self.status == 502 && got.as_deref() == Some("bad_gateway"),
            })
        }
    }
}

/// A bad request's answer that was not the documented one.
#[derive(Debug)]
pub struct Wrong {
    pub text: String,
    /// The proxy's `502` `bad_gateway`: the replica died with the request, as in a failover window.
    pub bad_gateway: bool,
}

impl From<String> for Wrong {
    fn from(text: String) -> Self {
        Wrong {
            text,
            bad_gateway: false,
        }
    }
}

/// A raw client connection: exact bytes out, answers read with the generator's own parser.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    pub async fn connect(proxy: SocketAddr) -> Result<Raw, String> {
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(proxy))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        Ok(Raw {
            stream,
            buf: BytesMut::new(),
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads one complete answer within `within`; a reset or an early end is an error.
    async fn answer_within(&mut self, within: Duration) -> Result<RawAnswer, String> {
        tokio::time::timeout(within, self.read_answer())
            .await
            .map_err(|_| format!("no complete answer within {within:?}"))?
    }

    pub async fn answer(&mut self) -> Result<RawAnswer, String> {
        self.answer_within(REQUEST_TIMEOUT).await
    }

    async fn read_answer(&mut self) -> Result<RawAnswer, String> {
        let head = loop {
            if let Some(head) =
                wire::parse_head(&self.buf).map_err(|_| "an unreadable answer head".to_string())?
            {
                break head;
            }
            self.read_more("the answer head").await?;
        };
        loop {
            let found = wire::take_body(&self.buf[head.len..], head.body)
                .map_err(|_| "an unreadable answer body".to_string())?;
            if let Some((body, used)) = found {
                self.buf.advance(head.len + used);
                return Ok(RawAnswer {
                    status: head.status,
                    close: head.close,
                    body,
                });
            }
            if head.body == BodyEnd::Close {
                if self.read_more_or_end().await? {
                    continue;
                }
                let body = self.buf.split_off(head.len).freeze();
                self.buf.clear();
                return Ok(RawAnswer {
                    status: head.status,
                    close: true,
                    body,
                });
            }
            self.read_more("the answer body").await?;
        }
    }

    async fn read_more(&mut self, what: &str) -> Result<(), String> {
        if self.read_more_or_end().await? {
            Ok(())
        } else {
            Err(format!("the connection ended before {what} was complete"))
        }
    }

    /// `Ok(false)` at the end of the stream; a reset is an error.
    pub async fn read_more_or_end(&mut self) -> Result<bool, String> {
        self.buf.reserve(4096);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(format!("read: {e}")),
        }
    }
}

pub fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n").into_bytes()
}
