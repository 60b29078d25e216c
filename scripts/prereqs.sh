# shellcheck shell=bash
# Sourced by statelab's scripts: makes sure the commands a script needs are present.
#
#   ensure CMD:DEBIAN_PACKAGE ...
#
# A CMD of the form py/MODULE is a Python module: present when `python3 -c "import MODULE"` works.
#
# Missing commands are installed with apt-get when running as root on a Debian-like system;
# otherwise the script stops and names exactly what to install.

ensure() {
  # debootstrap and friends live in /usr/sbin, which a non-login root shell may not have.
  [[ :$PATH: == *:/usr/sbin:* ]] || PATH=$PATH:/usr/sbin:/sbin
  local missing=() pkgs=() spec cmd pkg
  for spec in "$@"; do
    cmd=${spec%%:*}
    pkg=${spec#*:}
    if [[ $cmd == py/* ]]; then
      python3 -c "import ${cmd#py/}" >/dev/null 2>&1 || { missing+=("$cmd"); pkgs+=("$pkg"); }
    else
      command -v "$cmd" >/dev/null 2>&1 || { missing+=("$cmd"); pkgs+=("$pkg"); }
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo ">> installing ${pkgs[*]} (needed for: ${missing[*]})" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null; }
  else
    echo "error: missing ${missing[*]}; install with: sudo apt-get install -y ${pkgs[*]}" >&2
    exit 1
  fi
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
