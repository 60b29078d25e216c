//! The client address a request is hashed by.

use std::net::IpAddr;

use http::HeaderValue;
use ipnet::IpNet;

/// The ip-hash key of a request: the peer address, or, when the peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not itself trusted (walking from the right, as
/// each proxy appends; the left part of the header is client-supplied and cannot be trusted).
/// `xff` is every `X-Forwarded-For` line in order: several lines form one list.
pub fn client_key<'a>(
    peer: IpAddr,
    xff: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    trusted: &[IpNet],
) -> IpAddr {
    if trusted.is_empty() || !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    let mut last_trusted = peer;
    for line in xff.rev() {
        let Ok(text) = line.to_str() else {
            return last_trusted;
        };
        for part in text.rsplit(',') {
            let Ok(ip) = part.trim().parse::<IpAddr>() else {
                // Garbage in the chain: stop at the last address we could vouch for.
                return last_trusted;
            };
            if !trusted.iter().any(|n| n.contains(&ip)) {
                return ip;
            }
            last_trusted = ip;
        }
    }
    last_trusted
}

/// Bytes of an address used as the hash key (no allocation).
pub fn key_bytes(ip: &IpAddr, buf: &mut [u8; 16]) -> usize {
    match ip {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            buf.copy_from_slice(&v6.octets());
            16
        }
    }
}
