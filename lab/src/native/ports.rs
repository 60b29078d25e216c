//! The ports `up` and `scale` choose: fixed, pinned or free.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use nix::fcntl::{Flock, FlockArg};

use crate::labdir::LabDir;
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

/// How long a claim holds before its lab lists the port in its `ports` file: the time from
/// choosing the ports to writing them, with a wide margin.
const CLAIM_GRACE: Duration = Duration::from_secs(60);

/// The longest wait for the claims directory's lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The free ports the labs on this machine have picked, one file per port in a directory shared
/// by every lab (`$TMPDIR/statelab-ports/PORT`, holding the lab directory that picked it). A port
/// that nothing listens on yet may be one that another lab picked a moment ago and has not
/// started; the claim keeps two labs starting at once, or a lab with a killed part, from sharing
/// it. A claim holds while its lab's `ports` file lists the port (so until that lab's `down`, or
/// its scale-in of the replica), or for [`CLAIM_GRACE`] after it was made.
pub(super) struct Claims {
    dir: PathBuf,
    owner: String,
    grace: Duration,
}

impl Claims {
    pub(super) fn new(lab: &LabDir) -> Claims {
        Claims::in_dir(
            std::env::temp_dir().join("statelab-ports"),
            lab,
            CLAIM_GRACE,
        )
    }

    fn in_dir(dir: PathBuf, lab: &LabDir, grace: Duration) -> Claims {
        let owner = lab.path("");
        let owner = owner.canonicalize().unwrap_or(owner);
        Claims {
            dir,
            owner: owner.display().to_string(),
            grace,
        }
    }

    /// Claims `port` for this lab; `false` when another lab holds it. Without a usable claims
    /// directory every port is granted, and the listening checks alone decide.
    fn claim(&self, port: u16) -> bool {
        let Some(_lock) = self.lock() else {
            return true;
        };
        let path = self.dir.join(port.to_string());
        if let Ok(holder) = fs::read_to_string(&path) {
            if holder != self.owner && self.holds(&holder, &path, port) {
                return false;
            }
        }
        if fs::write(&path, &self.owner).is_ok() {
            // Any user's lab may replace it once it no longer holds.
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o666));
        }
        true
    }

    /// Whether `holder`'s claim on `port` (in the file at `path`) still holds.
    fn holds(&self, holder: &str, path: &Path, port: u16) -> bool {
        let young = fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() < self.grace);
        young
            || LabDir::new(PathBuf::from(holder))
                .ports()
                .values()
                .any(|p| *p == port)
    }

    /// Drops this lab's claims on `ports` (at `down`).
    pub(super) fn release(&self, ports: impl IntoIterator<Item = u16>) {
        let Some(_lock) = self.lock() else { return };
        for port in ports {
            let path = self.dir.join(port.to_string());
            if fs::read_to_string(&path).is_ok_and(|holder| holder == self.owner) {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// An exclusive lock on the claims directory, which it creates (open to every user, sticky,
    /// as `/tmp` is) when it is missing; `None` when it cannot be had within [`LOCK_WAIT`] (a
    /// holder keeps it for a few file operations).
    fn lock(&self) -> Option<Flock<fs::File>> {
        if !self.dir.is_dir() {
            fs::create_dir_all(&self.dir).ok()?;
            let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o1777));
        }
        let path = self.dir.join("lock");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok()?;
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o666));
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Some(lock),
                Err((back, _)) if std::time::Instant::now() < deadline => {
                    file = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return None,
            }
        }
    }
}

/// A random loopback port below the ephemeral range that nothing listens on, `taken` lacks and
/// no other lab has claimed; claimed for this lab.
pub(super) async fn free_port(taken: &[u16], claims: &Claims) -> anyhow::Result<u16> {
    let high = ephemeral_low() - 1;
    for _ in 0..500 {
        let port = FREE_PORT_LOW + (random_u64() % u64::from(high - FREE_PORT_LOW + 1)) as u16;
        if !taken.contains(&port)
            && !port_open(port).await
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && claims.claim(port)
        {
            return Ok(port);
        }
    }
    bail!("found no free port in {FREE_PORT_LOW}-{high}")
}

/// The pinned port, or a free one that `taken` lacks; either way recorded in `taken`.
async fn pinned_or_free(
    pinned: Option<u16>,
    taken: &mut Vec<u16>,
    claims: &Claims,
) -> anyhow::Result<u16> {
    let port = match pinned {
        Some(p) => p,
        None => free_port(taken, claims).await?,
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
pub(super) async fn choose_ports(
    s: &Settings,
    store: Store,
    claims: &Claims,
) -> anyhow::Result<NativePorts> {
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
                replicas.insert(r, pinned_or_free(None, &mut taken, claims).await?);
            }
            let proxy = pinned_or_free(s.proxy_port, &mut taken, claims).await?;
            let admin = pinned_or_free(s.admin_port, &mut taken, claims).await?;
            let mut nodes = BTreeMap::new();
            let mut buses = BTreeMap::new();
            for n in store.nodes() {
                let pinned = match n {
                    StoreNode::Redis | StoreNode::Data(1) => s.redis_port,
                    _ => None,
                };
                nodes.insert(n, pinned_or_free(pinned, &mut taken, claims).await?);
                if let StoreNode::Cluster(_) = n {
                    buses.insert(n, pinned_or_free(None, &mut taken, claims).await?);
                }
            }
            NativePorts {
                objects: pinned_or_free(None, &mut taken, claims).await?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(root: &Path, name: &str) -> LabDir {
        let dir = LabDir::new(root.join(name));
        dir.create().expect("a lab directory");
        dir
    }

    #[test]
    fn a_claimed_port_is_held_while_its_lab_lists_it() {
        let root = std::env::temp_dir().join(format!("statelab-claims-{}", std::process::id()));
        let (one, two) = (lab(&root, "one"), lab(&root, "two"));
        let claims = root.join("claims");
        let a = Claims::in_dir(claims.clone(), &one, Duration::ZERO);
        let b = Claims::in_dir(claims.clone(), &two, Duration::ZERO);
        assert!(a.claim(20001));
        one.write_ports(&[("stateful-1".into(), 20001)])
            .expect("lab one's ports");
        assert!(!b.claim(20001), "lab one lists 20001");
        assert!(a.claim(20001), "a lab's own claim is its own");
        // Lab one went down (its ports file is cleared): its claim no longer holds.
        one.clear();
        assert!(b.claim(20001));
        two.write_ports(&[("proxy".into(), 20001)])
            .expect("lab two's ports");
        assert!(!a.claim(20001));
        // Releasing drops only a lab's own claims.
        a.release([20001]);
        assert!(claims.join("20001").exists());
        b.release([20001]);
        assert!(!claims.join("20001").exists());
        // Within the grace a fresh claim holds before its lab has written its ports.
        let patient = Claims::in_dir(claims, &one, Duration::from_secs(600));
        assert!(b.claim(20002));
        assert!(!patient.claim(20002));
        let _ = fs::remove_dir_all(&root);
    }
}
