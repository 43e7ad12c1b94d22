# Sourced by scripts/serve and scripts/test: create .venv and install the pinned dependencies.
# Re-installs only when a lock file changed since the last install.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${KEYBRAKE_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}

ensure_venv() {
  local lock=$1 stamp
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "Keybrake needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))." >&2
    exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual environment in $VENV" >&2
    "$PYTHON" -m venv "$VENV"
  fi
  stamp="$VENV/.keybrake-$(basename "$lock").sha256"
  local want
  want=$(cat "$ROOT/requirements/"*.lock "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing pinned dependencies from requirements/$(basename "$lock")" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock" 2> >(grep -v '^WARNING: Location' >&2)
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT" \
      2> >(grep -v -e '^WARNING: Location' -e 'BuildBackendWarning' >&2)
    echo "$want" > "$stamp"
  fi
}
