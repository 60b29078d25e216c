//! Avatars as files on the replica's local disk.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use statelab_formats::ImageType;

use super::{object_name, Avatar, FileError};

/// Avatars in a directory of this replica: `DIR/avatars/<name in hex>.<png|jpeg>`.
#[derive(Debug, Clone)]
pub struct DiskFiles {
    dir: PathBuf,
}

impl DiskFiles {
    /// Files under `dir`, which is created when the first avatar is stored.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskFiles { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, username: &str, image: ImageType) -> PathBuf {
        let ext = match image {
            ImageType::Png => "png",
            ImageType::Jpeg => "jpeg",
        };
        self.dir.join(format!("{}.{ext}", object_name(username)))
    }

    /// Writes the file whole before it replaces the old one (a temporary file, then a rename),
    /// so a reader never sees half an image; an avatar of the other type is removed after.
    pub async fn put(&self, username: &str, avatar: &Avatar) -> Result<(), FileError> {
        let path = self.path(username, avatar.image);
        let parent = path
            .parent()
            .ok_or_else(|| FileError::Unavailable("the data directory has no parent".into()))?;
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| unavailable("create", parent, e))?;
        let temp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&temp, &avatar.bytes)
            .await
            .map_err(|e| unavailable("write", &temp, e))?;
        if let Err(e) = tokio::fs::rename(&temp, &path).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(unavailable("rename", &path, e));
        }
        for other in ImageType::ALL.into_iter().filter(|t| *t != avatar.image) {
            match tokio::fs::remove_file(self.path(username, other)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(unavailable("remove", &self.path(username, other), e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub async fn get(&self, username: &str) -> Result<Option<Avatar>, FileError> {
        for image in ImageType::ALL {
            let path = self.path(username, image);
            match tokio::fs::read(&path).await {
                Ok(bytes) => {
                    return Ok(Some(Avatar {
                        image,
                        bytes: Bytes::from(bytes),
                    }))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(unavailable("read", &path, e)),
            }
        }
        Ok(None)
    }
}

fn unavailable(what: &str, path: &Path, e: std::io::Error) -> FileError {
    FileError::Unavailable(format!("cannot {what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "statelab-disk-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        d
    }

    #[tokio::test]
    async fn an_avatar_reads_back_and_a_new_type_replaces_the_old() {
        let root = dir("roundtrip");
        let files = DiskFiles::new(&root);
        assert_eq!(files.get("ann").await.expect("read"), None);
        let png = Avatar {
            image: ImageType::Png,
            bytes: Bytes::from_static(b"\x89PNG\r\n\x1a\nxyz"),
        };
        files.put("ann", &png).await.expect("write");
        assert_eq!(files.get("ann").await.expect("read"), Some(png));
        let jpeg = Avatar {
            image: ImageType::Jpeg,
            bytes: Bytes::from_static(b"\xff\xd8\xff\xe0abc"),
        };
        files.put("ann", &jpeg).await.expect("replace");
        assert_eq!(files.get("ann").await.expect("read"), Some(jpeg));
        assert_eq!(files.get("bob").await.expect("read"), None);
        let left: Vec<_> = std::fs::read_dir(root.join("avatars"))
            .expect("the directory")
            .collect();
        assert_eq!(left.len(), 1, "one file, no temporary left: {left:?}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
