//! The ports `up` and `scale` choose: fixed, pinned or free.

use std::collections::BTreeMap;
use std::fs;

use anyhow::bail;

use crate::model::{NativePorts, Replica, Store, StoreNode, FIXED_S3_PORT, OBJECTS_NAME};
use crate::probe::port_open;
use crate::settings::{PortPlan, Settings, DEFAULT_ADMIN_PORT, DEFAULT_PROXY_PORT};

/// Free ports are picked from here up to the kernel's ephemeral range.
const FREE_PORT_LOW: u16 = 10000;

/// The first port of the kernel's ephemeral range; free ports stay below it, where no outgoing
/// connection can hold one that nothing listens on.
fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .filter(|low: &u16| *low > FREE_PORT_LOW + 1000)
        .unwrap_or(32768)
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_or(0, |()| u64::from_le_bytes(b))
}

/// A random loopback port below the ephemeral range that nothing listens on and `taken` lacks.
pub(super) async fn free_port(taken: &[u16]) -> anyhow::Result<u16> {
    let high = ephemeral_low() - 1;
    for _ in 0..500 {
        let port = FREE_PORT_LOW + (random_u64() % u64::from(high - FREE_PORT_LOW + 1)) as u16;
        if !taken.contains(&port)
            && !port_open(port).await
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
    }
    bail!("found no free port in {FREE_PORT_LOW}-{high}")
}

/// The pinned port, or a free one that `taken` lacks; either way recorded in `taken`.
async fn pinned_or_free(pinned: Option<u16>, taken: &mut Vec<u16>) -> anyhow::Result<u16> {
    let port = match pinned {
        Some(p) => p,
        None => free_port(taken).await?,
    };
    taken.push(port);
    Ok(port)
}

/// The first port from `from` up that nothing listens on and `taken` lacks.
async fn first_free_from(from: u16, taken: &[u16]) -> u16 {
    let mut p = from;
    while taken.contains(&p) || port_open(p).await {
        p += 1;
    }
    p
}

/// Chooses every port `up` needs, per the port plan and the pinned variables.
pub(super) async fn choose_ports(s: &Settings, store: Store) -> anyhow::Result<NativePorts> {
    let in_use = |port: u16, what: String| async move {
        if port_open(port).await {
            bail!("port {port} (for {what}) is already in use; see: ss -ltnp 'sport = :{port}'")
        }
        Ok(())
    };
    let ports = match s.ports {
        PortPlan::Fixed => {
            let mut replicas = BTreeMap::new();
            for r in Replica::initial() {
                in_use(r.fixed_port(), r.to_string()).await?;
                replicas.insert(r, r.fixed_port());
            }
            // Redis nodes from 16379 up, Sentinels from 26379 up, cluster buses from 17379 up;
            // STATELAB_REDIS_PORT pins the single Redis or the first data node.
            let mut nodes = BTreeMap::new();
            let mut buses = BTreeMap::new();
            let mut taken = Vec::new();
            for n in store.nodes() {
                let port = match (n, s.redis_port) {
                    (StoreNode::Redis | StoreNode::Data(1), Some(p)) => p,
                    (StoreNode::Sentinel(_), _) => first_free_from(26379, &taken).await,
                    _ => first_free_from(16379, &taken).await,
                };
                taken.push(port);
                nodes.insert(n, port);
                if let StoreNode::Cluster(_) = n {
                    let bus = first_free_from(17379, &taken).await;
                    taken.push(bus);
                    buses.insert(n, bus);
                }
            }
            in_use(FIXED_S3_PORT, OBJECTS_NAME.to_string()).await?;
            NativePorts {
                store: nodes,
                buses,
                objects: FIXED_S3_PORT,
                proxy: s.proxy_port.unwrap_or(DEFAULT_PROXY_PORT),
                admin: s.admin_port.unwrap_or(DEFAULT_ADMIN_PORT),
                replicas,
            }
        }
        PortPlan::Free => {
            // Pinned ports first, so that no random pick takes one of them.
            let mut taken: Vec<u16> = [s.proxy_port, s.admin_port, s.redis_port]
                .into_iter()
                .flatten()
                .collect();
            let mut replicas = BTreeMap::new();
            for r in Replica::initial() {
                replicas.insert(r, pinned_or_free(None, &mut taken).await?);
            }
            let proxy = pinned_or_free(s.proxy_port, &mut taken).await?;
            let admin = pinned_or_free(s.admin_port, &mut taken).await?;
            let mut nodes = BTreeMap::new();
            let mut buses = BTreeMap::new();
            for n in store.nodes() {
                let pinned = match n {
                    StoreNode::Redis | StoreNode::Data(1) => s.redis_port,
                    _ => None,
                };
                nodes.insert(n, pinned_or_free(pinned, &mut taken).await?);
                if let StoreNode::Cluster(_) = n {
                    buses.insert(n, pinned_or_free(None, &mut taken).await?);
                }
            }
            NativePorts {
                objects: pinned_or_free(None, &mut taken).await?,
                proxy,
                admin,
                store: nodes,
                buses,
                replicas,
            }
        }
    };
    for (port, what) in [(ports.proxy, "proxy"), (ports.admin, "admin")] {
        if port_open(port).await {
            bail!("port {port} ({what}) is in use; set STATELAB_PROXY_PORT/STATELAB_ADMIN_PORT");
        }
    }
    if let Some(p) = s.redis_port {
        if port_open(p).await {
            bail!("STATELAB_REDIS_PORT {p} is already in use");
        }
    }
    Ok(ports)
}
