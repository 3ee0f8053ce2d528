# Shared helpers for the scripts in this folder: sourced, not run.
set -euo pipefail

# The repository root, whichever folder the script was called from.
COUNT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$COUNT_ROOT/target}

# Installs the Debian packages named as arguments that are not installed yet.
# A package given as name=version is pinned to that version.
ensure_debs() {
  local missing=() spec name
  for spec in "$@"; do
    name=${spec%%=*}
    if ! dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$spec")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The PostgreSQL 15 server the service and its tests run on.
ensure_postgres() {
  ensure_debs postgresql-15
}
