//! ip-hash: consistent hashing on the client address.

use pingora::http::RequestHeader;
use pingora::lb::selection::Consistent;

use super::{client_key, Admission, Client, Picker, ReplicaId, Route, RouteKey};

/// Consistent hashing on the client address (pingora's Ketama `Consistent`): a client keeps its
/// replica while that replica is usable, and adding a replica moves only about 1/(N+1) of them.
pub type IpHash = Picker<Consistent>;

impl IpHash {
    /// The client address as hash key: the peer, or the client a trusted peer names.
    pub(super) fn key_of(req: &RequestHeader, client: Client<'_>) -> RouteKey {
        match client.peer {
            Some(peer) => RouteKey::for_client(&client_key(
                peer,
                req.headers.get_all("x-forwarded-for").iter(),
                client.trusted,
            )),
            None => RouteKey::default(),
        }
    }
}

impl Route for IpHash {
    fn key(&self, req: &RequestHeader, client: Client<'_>) -> RouteKey {
        IpHash::key_of(req, client)
    }

    fn pick(
        &self,
        key: &RouteKey,
        accept: &mut dyn FnMut(ReplicaId, Admission) -> bool,
    ) -> Option<ReplicaId> {
        Picker::pick(self, key.hash_key(), &mut |id| accept(id, Admission::New))
    }
}
