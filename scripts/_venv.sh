# Sourced by scripts/serve, scripts/demo and scripts/test: create .venv and install the pinned dependencies.
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
  # Two scripts started together (./scripts/fake-stripe and ./scripts/serve on a first run) set
  # up one .venv in turn: the second waits, then finds it ready.
  if command -v flock >/dev/null; then
    mkdir -p "$(dirname "$VENV")"
    exec 9>"$VENV.lock"
    flock 9
  fi
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import pip' 2>/dev/null; then
    echo "creating virtual environment in $VENV" >&2
    "$PYTHON" -m venv --clear "$VENV"  # --clear: a setup that was cut short starts over
  fi
  stamp="$VENV/.keybrake-$(basename "$lock").sha256"
  local want
  want=$(cat "$ROOT/requirements/"*.lock "$ROOT/pyproject.toml" "$ROOT/client/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing pinned dependencies from requirements/$(basename "$lock")" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock" 2> >(grep -v '^WARNING: Location' >&2)
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT" \
      2> >(grep -v -e '^WARNING: Location' -e 'BuildBackendWarning' >&2)
    # the client library (client/, distribution keybrake-client): its deps are in the locks
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT/client" \
      2> >(grep -v -e '^WARNING: Location' -e 'BuildBackendWarning' >&2)
    echo "$want" > "$stamp"
  fi
  if command -v flock >/dev/null; then
    exec 9>&-
  fi
}

# Debian packages the suite needs: `ensure_apt_tool COMMAND PACKAGE WHY` installs PACKAGE when
# COMMAND is missing (root, apt); otherwise says how, and fails on CI (CI=true).
ensure_apt_tool() {
  local cmd=$1 pkg=$2 why=$3 how log policy
  command -v "$cmd" >/dev/null && return 0
  how="apt-get install --no-install-recommends $pkg (as root)"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $pkg (Debian package) for $why" >&2
    log=$(mktemp)
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists only when they do not offer the package or are stale (install fails).
    policy=$(apt-cache policy "$pkg" 2>/dev/null || true)
    if [[ $policy != *"Candidate: "[0-9]* ]]; then
      apt-get update -q >>"$log" 2>&1 || true
    fi
    if ! apt-get install -y -q --no-install-recommends "$pkg" >>"$log" 2>&1; then
      apt-get update -q >>"$log" 2>&1 && apt-get install -y -q --no-install-recommends "$pkg" >>"$log" 2>&1 \
        || cat "$log" >&2
    fi
    rm -f "$log"
  fi
  command -v "$cmd" >/dev/null && return 0
  if [ -n "${CI:-}" ]; then
    echo "$why needs $pkg: $how" >&2
    exit 1
  fi
  echo "note: no $pkg, so $why skips; to run it: $how" >&2
}

# The /docs browser test (tests/admin/test_docs_page.py) drives Debian's Chromium through Playwright.
ensure_chromium() { ensure_apt_tool chromium chromium "the browser tests (the web console, the /docs page)"; }

# The benchmark's smoke test (tests/test_bench_smoke.py) runs its wrk (max throughput) scenario.
ensure_wrk() { ensure_apt_tool wrk wrk "the benchmark smoke test"; }
