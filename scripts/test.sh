#!/bin/sh
# Install everything the test suite needs and run all of it (this is what CI runs, via .ci/run).
#   - system tools some tests use: bubblewrap (the sandbox's strongest isolation) and Chromium
#     (the HTML reports are opened in a real headless browser); installed with apt when this
#     runs as root and they are missing, otherwise those tests report themselves as skipped;
#   - a virtual environment .venv with jitgrade and its test extras;
#   - pytest on two processes.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    if [ -n "$missing" ]; then
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y --no-install-recommends $missing >/dev/null 2>&1 \
          || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends $missing >/dev/null 2>&1; }; } \
          || echo "scripts/test.sh: could not install$missing; the tests that need them will be skipped" >&2
    fi
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
exec .venv/bin/python -m pytest -n 2 "$@"
