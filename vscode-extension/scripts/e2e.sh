#!/usr/bin/env bash
# End-to-end test of the extension: build the .vsix from this checkout, then run tests/vscode/e2e.mjs
# (code-server + headless Chromium + the real language server on the given checkpoint).
#
#   vscode-extension/scripts/e2e.sh --model CHECKPOINT_DIR [--python PYTHON] [--artefacts DIR] [--timeout S]
#                                    [--min-confidence X]   (diffill.completion.minConfidence; default: the model's)
#
# Needs: `npm ci` in vscode-extension/ and tests/vscode/ (see tests/vscode/install.sh), /usr/bin/chromium, and
# a Python with Diffill's dependencies. The language server is imported from this checkout (PYTHONPATH).
set -euo pipefail
caller="$PWD"  # relative paths in the arguments are the caller's
here="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$here/.." && pwd)"
out="$(mktemp -d "${TMPDIR:-/tmp}/diffill-vsix-XXXXXX")"
trap 'rm -rf "$out"' EXIT

cd "$here"
npm run --silent typecheck
npm run --silent build >/dev/null
npx --no-install vsce package --no-dependencies --out "$out/diffill.vsix" >/dev/null

export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
cd "$caller"
node "$repo/tests/vscode/e2e.mjs" --vsix "$out/diffill.vsix" "$@"
