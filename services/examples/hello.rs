//! The ceiling for `scripts/bench-services`: a bare hyper 1 server answering every request
//! with a fixed small body, on the same runtime, HTTP stack and socket options as the services,
//! so the ratio to it measures what the session work costs and nothing else.
//!
//! Usage: `hello 127.0.0.1:PORT`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    let mut r =
                        Response::new(Full::new(Bytes::from_static(b"{\"hello\":\"world\"}")));
                    r.headers_mut().insert(
                        "x-replica",
                        hyper::header::HeaderValue::from_static("hello"),
                    );
                    Ok::<_, Infallible>(r)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
