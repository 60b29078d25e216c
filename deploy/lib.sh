# shellcheck shell=bash
# deploy/lib.sh: Docker helpers shared by deploy/offline-images and the lab's image build
# (statelab-lab, behind scripts/lab).
# Sourced, not run.

# statelab_build_cli: print a docker CLI that can build with BuildKit, or fail with advice.
# docker CLI 23+ needs the buildx plugin for BuildKit; an older CLI (Debian's docker.io 20.10 puts
# one at /usr/bin/docker) uses the engine's built-in BuildKit with DOCKER_BUILDKIT=1.
statelab_build_cli() {
  local cli version
  for cli in docker /usr/bin/docker /usr/local/bin/docker; do
    command -v "$cli" >/dev/null 2>&1 || continue
    if "$cli" buildx version >/dev/null 2>&1; then
      printf '%s\n' "$cli"
      return 0
    fi
    version=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null || true)
    if [[ $version =~ ^([0-9]+)\. ]] && ((BASH_REMATCH[1] < 23)); then
      printf '%s\n' "$cli"
      return 0
    fi
  done
  printf 'error: no docker CLI here can build with BuildKit (docker CLI 23+ needs the buildx plugin:\n' >&2
  printf '       apt-get install -y docker-buildx, where Debian has it, or docker-buildx-plugin from Docker)\n' >&2
  return 1
}

# statelab_docker_build ARGS...: docker build with BuildKit on the CLI statelab_build_cli picks.
statelab_docker_build() {
  local cli
  cli=$(statelab_build_cli) || return 1
  if "$cli" buildx version >/dev/null 2>&1; then
    "$cli" buildx build --load "$@"
  else
    DOCKER_BUILDKIT=1 "$cli" build "$@"
  fi
}
