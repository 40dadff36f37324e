#!/usr/bin/env bash
# One check command for CI and people.
#   scripts/check.sh install   install Diffill and its dev tools (CPU torch wheel first, so nothing pulls CUDA),
#                              and what the VS Code end-to-end test needs (Debian Chromium, code-server from npm)
#   scripts/check.sh test      ruff lint + format, the extension's typecheck/format/unit tests, then pytest
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-test}" in
  install)
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet torch==2.13.0
    python -m pip install --quiet -e '.[dev]'
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ripgrep build-essential pkg-config python3 \
        libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev >/dev/null
    fi
    bash tests/vscode/install.sh
    ;;
  test)
    python -m ruff check .
    python -m ruff format --check .
    npm run --silent --prefix vscode-extension typecheck
    npm run --silent --prefix vscode-extension format:check
    npm test --silent --prefix vscode-extension >/dev/null
    python -m pytest -q "${@:2}"
    ;;
  *)
    echo "usage: $0 install|test" >&2
    exit 2
    ;;
esac
