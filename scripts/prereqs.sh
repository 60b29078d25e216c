# shellcheck shell=bash
# Sourced by statelab's scripts: makes sure what a script needs is present, and checks again after
# installing it.
#
#   ensure SPEC ...           everything named must be there: installed, or the script stops
#   ensure_optional SPEC ...  the same, but returns 1 (after saying what is missing) instead of
#                             stopping, so the caller can skip what needs it and say so
#
# A SPEC is CMD:DEBIAN_PACKAGE (present when CMD is on PATH, /usr/sbin and /sbin included) or
# py/MODULE:DEBIAN_PACKAGE (present when some interpreter imports MODULE; see python_with).
#
# What is missing is installed with apt-get when running as root on a Debian-like system; every
# SPEC is then checked again, and one still missing stops the script with a message that names it
# (for a module, the interpreters tried). Without root or apt-get the script stops and names exactly
# what to install.

# python_with MODULE: set STATELAB_PYTHON to the first interpreter that imports MODULE and return 0,
# or return 1. The candidates, in order: STATELAB_PYTHON when set; else `python3` on PATH, then
# Debian's own /usr/bin/python3, which is where Debian's python3-* packages install (PATH's python3
# may be another interpreter, such as pyenv's, that cannot see them).
python_with() {
  local py
  for py in $(python_candidates); do
    if "$py" -c "import $1" >/dev/null 2>&1; then
      STATELAB_PYTHON=$(command -v "$py")
      export STATELAB_PYTHON
      return 0
    fi
  done
  return 1
}

python_candidates() {
  if [[ -n ${STATELAB_PYTHON:-} ]]; then
    printf '%s\n' "$STATELAB_PYTHON"
  else
    printf '%s\n' python3 /usr/bin/python3
  fi
}

# prereq_present SPEC: 0 when SPEC's command or module is there.
prereq_present() {
  local what=${1%%:*}
  if [[ $what == py/* ]]; then
    python_with "${what#py/}"
  else
    command -v "$what" >/dev/null 2>&1
  fi
}

# prereq_describe SPEC: one line saying what is missing, for an error message.
prereq_describe() {
  local what=${1%%:*} pkg=${1#*:} py where tried=()
  if [[ $what == py/* ]]; then
    for py in $(python_candidates); do
      where=$(command -v "$py" 2>/dev/null) || where="$py (not found)"
      [[ " ${tried[*]} " == *" $where "* ]] || tried+=("$where")
    done
    printf 'Python module %s (Debian package %s) is not importable from: %s; install it for one of them, or set STATELAB_PYTHON to an interpreter that has it' \
      "${what#py/}" "$pkg" "${tried[*]}"
  else
    printf 'command %s (Debian package %s) is not on PATH' "$what" "$pkg"
  fi
}

# prereqs_install SPEC...: install the Debian packages of the SPECs that are missing, then check
# them all again. Returns 0 when all are present, else prints what is missing and returns 1.
prereqs_install() {
  # debootstrap and friends live in /usr/sbin, which a non-login root shell may not have.
  [[ :$PATH: == *:/usr/sbin:* ]] || PATH=$PATH:/usr/sbin:/sbin
  local missing=() pkgs=() spec
  for spec in "$@"; do
    prereq_present "$spec" || { missing+=("$spec"); pkgs+=("${spec#*:}"); }
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    for spec in "${missing[@]}"; do echo "error: $(prereq_describe "$spec")" >&2; done
    echo "error: install with: sudo apt-get install -y ${pkgs[*]}" >&2
    return 1
  fi
  echo ">> installing ${pkgs[*]} (needed for: ${missing[*]%%:*})" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null; } \
    || echo "error: apt-get install ${pkgs[*]} failed" >&2
  local still=0
  for spec in "${missing[@]}"; do
    if ! prereq_present "$spec"; then
      echo "error: after installing: $(prereq_describe "$spec")" >&2
      still=1
    fi
  done
  return "$still"
}

ensure() {
  prereqs_install "$@" || exit 1
}

ensure_optional() {
  prereqs_install "$@"
}

# bin_dir_find NAME: print the first STATELAB_BIN_DIR folder's NAME that is executable; fail if
# none is (or the variable is unset).
bin_dir_find() {
  local dir
  while IFS= read -r dir; do
    [[ -n $dir && -x $dir/$1 ]] && { printf '%s\n' "$dir/$1"; return 0; }
  done < <(tr ':' '\n' <<<"${STATELAB_BIN_DIR:-}")
  return 1
}

ensure_cargo() {
  command -v cargo >/dev/null 2>&1 && return 0
  [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]] && { export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"; return 0; }
  echo "error: cargo is missing; install Rust with: curl --proto '=https' -sSf https://sh.rustup.rs | sh" >&2
  exit 1
}

# ensure_lint_tools: cargo's fmt and clippy subcommands, added with rustup when it is there; the
# script stops naming the components otherwise.
ensure_lint_tools() {
  local missing=() tool
  for tool in fmt clippy; do
    cargo "$tool" --version >/dev/null 2>&1 || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) && return 0
  if command -v rustup >/dev/null 2>&1; then
    echo ">> rustup component add rustfmt clippy (needed for: cargo ${missing[*]})" >&2
    rustup component add rustfmt clippy >&2 || true
  fi
  for tool in "${missing[@]}"; do
    cargo "$tool" --version >/dev/null 2>&1 || {
      echo "error: cargo $tool is missing; install with: rustup component add rustfmt clippy" >&2
      exit 1
    }
  done
}

# ensure_s3s_fs: the S3-compatible object store the services' file tests and the lab run (s3s-fs,
# from crates.io), exported as STATELAB_S3S_FS: the one it names already when that runs, else the
# one on PATH, else the one built into target/tools, else built there now (about two minutes on two
# cores; later runs reuse it).
S3S_FS_VERSION=0.14.1
ensure_s3s_fs() {
  local root tools
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  tools=${CARGO_TARGET_DIR:-$root/target}/tools
  if [[ -n ${STATELAB_S3S_FS:-} && -x $STATELAB_S3S_FS ]]; then
    :
  elif command -v s3s-fs >/dev/null 2>&1; then
    STATELAB_S3S_FS=$(command -v s3s-fs)
  elif [[ -x $tools/bin/s3s-fs ]]; then
    STATELAB_S3S_FS=$tools/bin/s3s-fs
  else
    echo ">> cargo install s3s-fs $S3S_FS_VERSION into $tools (the object store of the file tests)" >&2
    cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --quiet \
      --root "$tools" >&2 || {
      echo "error: could not build s3s-fs; install it with: cargo install s3s-fs --version $S3S_FS_VERSION --features binary --locked" >&2
      exit 1
    }
    STATELAB_S3S_FS=$tools/bin/s3s-fs
  fi
  export STATELAB_S3S_FS
}

# ensure_k8s_validate: kubernetes-validate (PyPI), which checks the Kubernetes manifests in
# deploy/k8s against the Kubernetes API's schemas it ships (lab/tests/k8s.rs), exported as
# STATELAB_K8S_VALIDATE: pinned, with the packages that decide what passes, in a virtual
# environment of its own, target/tools/k8s-venv, made again when its pins differ from these.
# Returns 1, saying why, when it cannot be installed.
K8S_VALIDATE_VERSION=1.37.0
K8S_VALIDATE_PINS="kubernetes-validate==$K8S_VALIDATE_VERSION jsonschema==4.26.0 referencing==0.37.0 PyYAML==6.0.4"
ensure_k8s_validate() {
  local root venv tool
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  venv=${CARGO_TARGET_DIR:-$root/target}/tools/k8s-venv
  tool=$venv/bin/kubernetes-validate
  if [[ ! -x $tool || $(cat "$venv/statelab-pins" 2>/dev/null) != "$K8S_VALIDATE_PINS" ]]; then
    # Debian's own python3 makes virtual environments only with python3-venv.
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && [[ $(id -u) == 0 ]] \
      && command -v apt-get >/dev/null 2>&1; then
      echo ">> installing python3-venv (needed for: python3 -m venv)" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
        || echo "error: apt-get install python3-venv failed" >&2
    fi
    echo ">> pip install kubernetes-validate $K8S_VALIDATE_VERSION into $venv (the Kubernetes manifests' schema test)" >&2
    rm -rf "$venv"
    # shellcheck disable=SC2086 # the pins are words
    if ! python3 -m venv "$venv" >&2 \
      || ! "$venv/bin/pip" install --quiet --no-input $K8S_VALIDATE_PINS >&2; then
      echo "error: could not install kubernetes-validate $K8S_VALIDATE_VERSION into $venv with python3 -m venv and pip (a python3 that makes virtual environments, python3-venv on Debian, and PyPI are needed)" >&2
      rm -rf "$venv"
      return 1
    fi
    printf '%s\n' "$K8S_VALIDATE_PINS" >"$venv/statelab-pins"
  fi
  if [[ $("$tool" --version 2>/dev/null) != "$K8S_VALIDATE_VERSION" ]]; then
    echo "error: $tool is not kubernetes-validate $K8S_VALIDATE_VERSION" >&2
    return 1
  fi
  STATELAB_K8S_VALIDATE=$tool
  export STATELAB_K8S_VALIDATE
}
