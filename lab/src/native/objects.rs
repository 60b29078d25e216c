//! The object store: where `s3s-fs` is found, and the keys the lab gives it.

use std::fs;
use std::path::PathBuf;

use anyhow::Context;

use crate::labdir::{random_hex, LabDir};
use crate::settings::Settings;

use super::{on_path, Native};

/// The object store's data, in the lab directory.
pub const OBJECTS_DIR: &str = "s3";
/// The object store's keys, in the lab directory.
const S3_KEYS: &str = "s3-keys";

/// The `s3s-fs` that version of the lab runs: `STATELAB_S3S_FS`, else `s3s-fs` on the PATH, else
/// the one `scripts/lab` and `scripts/test` build into the target folder's `tools/bin`.
pub fn s3s_fs(settings: &Settings) -> anyhow::Result<PathBuf> {
    if let Some(path) = &settings.s3s_fs {
        return Ok(path.clone());
    }
    let built = settings.cargo_tools_dir().join("bin/s3s-fs");
    on_path("s3s-fs")
        .or_else(|| built.is_file().then_some(built))
        .context(
            "no s3s-fs (the lab's object store): scripts/lab builds it on first use, or install it \
             with: cargo install s3s-fs --version 0.14.1 --features binary --locked; \
             STATELAB_S3S_FS names another",
        )
}

/// The object store's access key and secret key, made at each `up`.
pub(super) struct S3Keys {
    pub(super) access: String,
    pub(super) secret: String,
}

impl S3Keys {
    /// New keys for a new lab.
    pub(super) fn create(dir: &LabDir) -> anyhow::Result<()> {
        let text = format!("{}\n{}\n", random_hex(10)?, random_hex(20)?);
        dir.write_private(S3_KEYS, &text)
    }

    fn read(dir: &LabDir) -> anyhow::Result<S3Keys> {
        let path = dir.path(S3_KEYS);
        let text = fs::read_to_string(&path).with_context(|| {
            format!("cannot read {}; scripts/lab down, then up", path.display())
        })?;
        let mut lines = text.lines();
        match (lines.next(), lines.next()) {
            (Some(access), Some(secret)) if !access.is_empty() && !secret.is_empty() => {
                Ok(S3Keys {
                    access: access.to_string(),
                    secret: secret.to_string(),
                })
            }
            _ => anyhow::bail!("{} is not two lines of keys", path.display()),
        }
    }
}

impl Native {
    pub(super) fn s3s_fs(&self) -> anyhow::Result<PathBuf> {
        s3s_fs(&self.settings)
    }

    pub(super) fn s3_keys(&self) -> anyhow::Result<S3Keys> {
        S3Keys::read(&self.dir)
    }
}
