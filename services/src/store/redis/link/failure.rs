//! What a failed call says about the primary it ran on.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Why a call failed, as far as the link is concerned.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// The node is a replica now (`READONLY`): nothing was written, so the call may be retried
    /// on the primary found anew.
    Demoted,
    /// The connection broke, was refused or timed out: the primary may be gone. The call is not
    /// retried, since a write may have been applied before the break.
    Lost,
    /// An answer from a working primary (an `OOM`, a script error): nothing to change.
    Answer,
}

pub(super) fn classify(e: &RedisError) -> Failure {
    if e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) || e.code() == Some("READONLY") {
        Failure::Demoted
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.kind() == ErrorKind::Server(ServerErrorKind::MasterDown)
    {
        Failure::Lost
    } else {
        Failure::Answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readonly_asks_for_the_primary_again_and_a_broken_connection_drops_it() {
        let readonly = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert_eq!(classify(&readonly), Failure::Demoted);
        let broken: RedisError =
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into();
        assert_eq!(classify(&broken), Failure::Lost);
        let refused: RedisError =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into();
        assert_eq!(classify(&refused), Failure::Lost);
        let oom = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "OOM command not allowed",
        ));
        assert_eq!(classify(&oom), Failure::Answer);
    }
}
