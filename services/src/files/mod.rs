//! Where a user's avatar lives: the second seam after the session store.
//!
//! - [`DiskFiles`]: a file in the replica's own data directory, as a first version writes it.
//!   The next request, routed to another replica, does not find it; a replica that goes away
//!   takes its files along. The stateful design keeps its avatars there.
//! - [`S3Files`]: an object in a bucket of an S3-compatible object store that every replica
//!   reaches. The stateless and externalized designs keep their avatars there: the session may
//!   travel in a token, the file cannot.
//!
//! Objects are named by the user's name in hex, so a name never becomes a path.

use bytes::Bytes;
use statelab_formats::ImageType;

mod disk;
mod s3;

pub use disk::DiskFiles;
pub use s3::{S3Config, S3Files};

/// One stored avatar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avatar {
    pub image: ImageType,
    pub bytes: Bytes,
}

/// Why a file operation failed; the client learns only that files are unavailable.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The service runs with no file store (no object store configured).
    #[error("no file store is configured")]
    Unconfigured,
    /// The store did not answer, or answered with an error.
    #[error("{0}")]
    Unavailable(String),
}

/// The file store a service runs with.
#[derive(Debug)]
pub enum Files {
    Disk(DiskFiles),
    S3(Box<S3Files>),
    /// None configured: the file routes answer `503`.
    None,
}

impl Files {
    /// Stores `avatar` as `username`'s, replacing any earlier one.
    pub async fn put(&self, username: &str, avatar: &Avatar) -> Result<(), FileError> {
        match self {
            Files::Disk(d) => d.put(username, avatar).await,
            Files::S3(s) => s.put(username, avatar).await,
            Files::None => Err(FileError::Unconfigured),
        }
    }

    /// `username`'s avatar, or `None` when this store holds none.
    pub async fn get(&self, username: &str) -> Result<Option<Avatar>, FileError> {
        match self {
            Files::Disk(d) => d.get(username).await,
            Files::S3(s) => s.get(username).await,
            Files::None => Err(FileError::Unconfigured),
        }
    }
}

/// The object name of `username`'s avatar: `avatars/` and the name's bytes in hex.
pub fn object_name(username: &str) -> String {
    let mut name = String::with_capacity(8 + 2 * username.len());
    name.push_str("avatars/");
    for b in username.bytes() {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_hex_and_never_paths() {
        assert_eq!(object_name("ann"), "avatars/616e6e");
        assert_eq!(object_name("../x"), "avatars/2e2e2f78");
        assert_ne!(object_name("a"), object_name("A"));
    }
}
