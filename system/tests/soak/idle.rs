//! The idle clients: keep-alive connections that send one request at the start, stay idle
//! through the whole soak, and must still serve at its end.

use std::net::SocketAddr;

use crate::lab::Pool;
use crate::raw::{get, Raw};

/// Keep-alive connections that send one request at the start and then stay idle until the end.
pub const IDLE_CONNECTIONS: usize = 200;

/// Keep-alive connections that each send one request now and stay idle until [`idle_check`].
pub async fn idle_open(proxy: SocketAddr) -> Vec<(Pool, Raw)> {
    let mut conns = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let pool = Pool::ALL[i % Pool::ALL.len()];
        let mut conn = Raw::connect(proxy).await.expect("an idle connection");
        conn.send(&get(&format!("/{}/health", pool.name())))
            .await
            .expect("a request on an idle connection");
        let answer = conn
            .answer()
            .await
            .expect("an answer on an idle connection");
        assert!(
            answer.status == 200 && !answer.close,
            "an idle connection's first answer: {answer:?}"
        );
        conns.push((pool, conn));
    }
    conns
}

/// Every idle connection still serves a request; the failures, if any.
pub async fn idle_check(conns: &mut [(Pool, Raw)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, (pool, conn)) in conns.iter_mut().enumerate() {
        let outcome = async {
            conn.send(&get(&format!("/{}/health", pool.name()))).await?;
            let answer = conn.answer().await?;
            if answer.status == 200 {
                Ok(())
            } else {
                Err(format!("status {}", answer.status))
            }
        }
        .await;
        if let Err(e) = outcome {
            failures.push(format!("idle connection {i}: {e}"));
        }
    }
    failures
}
