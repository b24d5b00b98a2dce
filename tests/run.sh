#!/usr/bin/env bash
# Install what the test suite needs (tests/install.sh), then run it against real services.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install.sh
exec .venv/bin/python -m pytest "$@"
