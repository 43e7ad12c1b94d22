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

# The /docs browser test (tests/admin/test_docs_page.py) drives Debian's Chromium through
# Playwright. Install it when missing (root, apt); otherwise say how, and fail on CI (CI=true).
ensure_chromium() {
  command -v chromium >/dev/null && return 0
  local how="apt-get install --no-install-recommends chromium (as root)" log policy
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Chromium (Debian package) for the /docs browser test" >&2
    log=$(mktemp)
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists only when they do not offer chromium or are stale (install fails).
    policy=$(apt-cache policy chromium 2>/dev/null || true)
    if [[ $policy != *"Candidate: "[0-9]* ]]; then
      apt-get update -q >>"$log" 2>&1 || true
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >>"$log" 2>&1; then
      apt-get update -q >>"$log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >>"$log" 2>&1 \
        || cat "$log" >&2
    fi
    rm -f "$log"
  fi
  command -v chromium >/dev/null && return 0
  if [ -n "${CI:-}" ]; then
    echo "the /docs browser test needs Chromium: $how" >&2
    exit 1
  fi
  echo "note: no Chromium, so the /docs browser test skips; to run it: $how" >&2
}
