//! The lab's images: the official ones built from source, or offline stand-ins.

use std::fs;
use std::process::{Command, Stdio};

use crate::say;
use crate::settings::{Registry, Settings};

use super::{docker, run, run_visible, REDIS_IMAGE};

const RUNTIME_IMAGE: &str = "debian:bookworm-slim";
const RUST_IMAGE: &str = "rust:1-bookworm";

fn image_present(image: &str) -> bool {
    docker()
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Decides between the official images and the offline stand-ins, builds what is needed, and
/// returns the Redis image to run.
pub(crate) fn images(s: &Settings) -> anyhow::Result<String> {
    if registry_mode(s)? {
        let redis = env_or("STATELAB_REDIS_IMAGE", REDIS_IMAGE);
        if !s.skip_image_build || !image_present(&s.image) {
            say(format!(
                "building {} from source in the official Rust image (this compiles the workspace)",
                s.image
            ));
            let mut args: Vec<String> = Vec::new();
            for (var, arg) in [
                ("STATELAB_RUST_IMAGE", "RUST_IMAGE"),
                ("STATELAB_RUNTIME_IMAGE", "RUNTIME_IMAGE"),
            ] {
                if let Ok(v) = std::env::var(var) {
                    if !v.is_empty() {
                        args.extend(["--build-arg".into(), format!("{arg}={v}")]);
                    }
                }
            }
            let root = s.root.display().to_string();
            args.extend([
                "-f".into(),
                format!("{root}/deploy/Dockerfile"),
                "-t".into(),
                s.image.clone(),
                root.clone(),
            ]);
            // deploy/lib.sh picks the docker CLI that can build with BuildKit.
            run_visible(
                Command::new("bash")
                    .arg("-c")
                    .arg(r#". "$1/deploy/lib.sh" && shift && statelab_docker_build "$@""#)
                    .arg("statelab-build")
                    .arg(&root)
                    .args(&args),
            )?;
            let _ = run(docker().args([
                "image",
                "prune",
                "-f",
                "--filter",
                "label=statelab.image=lab",
            ]));
        }
        return Ok(redis);
    }
    let suite = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "bookworm".into());
    let redis = env_or(
        "STATELAB_STANDIN_IMAGE",
        &format!("statelab-standin/debian:{suite}"),
    );
    if s.skip_image_build && image_present(&s.image) && image_present(&redis) {
        say(format!(
            "STATELAB_SKIP_IMAGE_BUILD=1: using the existing {} and {redis}",
            s.image
        ));
    } else {
        say("building images offline from Debian packages and host-built binaries (deploy/offline-images)");
        let mut cmd = Command::new(s.root.join("deploy/offline-images"));
        if !s.bin_dirs.is_empty() {
            cmd.arg("--no-cargo");
        }
        run_visible(&mut cmd)?;
    }
    Ok(redis)
}

/// True for the official images, false for the offline stand-ins. With every base image present,
/// online; otherwise the missing Redis and runtime images (small) are pulled, each bounded by
/// `STATELAB_PROBE_TIMEOUT`, and the first failure means offline. The Rust build image (about
/// 1.5 GB) is not probed: the build pulls it.
fn registry_mode(s: &Settings) -> anyhow::Result<bool> {
    match s.registry {
        Registry::Offline => {
            say("STATELAB_OFFLINE=1: offline images, no registry asked");
            return Ok(false);
        }
        Registry::Online => return Ok(true),
        Registry::Probe => {}
    }
    let rust = env_or("STATELAB_RUST_IMAGE", RUST_IMAGE);
    let wanted = [
        env_or("STATELAB_REDIS_IMAGE", REDIS_IMAGE),
        env_or("STATELAB_RUNTIME_IMAGE", RUNTIME_IMAGE),
        rust.clone(),
    ];
    let missing: Vec<&String> = wanted.iter().filter(|i| !image_present(i)).collect();
    if missing.is_empty() {
        return Ok(true);
    }
    let secs = s.probe_timeout.as_secs();
    for img in missing.iter().filter(|i| ***i != rust) {
        say(format!(
            "registry probe: docker pull {img} (at most {secs} s)"
        ));
        let out = run(Command::new("timeout").arg(secs.to_string()).args([
            "docker",
            "pull",
            "-q",
            img.as_str(),
        ]))?;
        if out.status.code() == Some(124) {
            say(format!("docker pull {img} did not finish in {secs} s; going offline (STATELAB_OFFLINE=0 insists on the registry, STATELAB_PROBE_TIMEOUT gives it longer)"));
            return Ok(false);
        }
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            say(format!(
                "no container registry reachable (docker pull {img}: {})",
                err.lines().last().unwrap_or("").trim()
            ));
            return Ok(false);
        }
    }
    if missing.contains(&&rust) {
        say(format!("registry answers; the build pulls {rust}"));
    }
    Ok(true)
}
