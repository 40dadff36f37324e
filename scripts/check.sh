#!/usr/bin/env bash
# One check command for CI and people.
#   scripts/check.sh install   install Diffill and its dev tools (CPU torch wheel first, so nothing pulls CUDA)
#   scripts/check.sh test      ruff lint + format check, then the test suite
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-test}" in
  install)
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet torch==2.13.0
    python -m pip install --quiet -e '.[dev]'
    ;;
  test)
    python -m ruff check .
    python -m ruff format --check .
    python -m pytest -q "${@:2}"
    ;;
  *)
    echo "usage: $0 install|test" >&2
    exit 2
    ;;
esac
