#!/usr/bin/env bash
# Install what the VS Code extension's build and end-to-end test need (CI and people; Node 20, npm >= 10).
#
#   apt-get install -y chromium ripgrep build-essential pkg-config python3 libkrb5-dev libx11-dev \
#       libxkbfile-dev libsecret-1-dev          # once, as root (Debian 12)
#   tests/vscode/install.sh                     # npm ci for vscode-extension/ and tests/vscode/
#
# code-server (VS Code for the browser) is an npm package whose postinstall builds VS Code's native modules
# (hence the -dev packages) and runs npm inside lib/vscode. One of those modules, @vscode/ripgrep, downloads
# a ripgrep binary from GitHub; it takes a cached archive first, so Debian's ripgrep 13.0.0 (the version it
# pins) is packed into that cache and nothing is fetched outside the npm registry.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"

major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" != 20 ]; then
    echo "tests/vscode/install.sh: code-server 4.100.3 needs Node 20 (found $(node --version))" >&2
    exit 1
fi

# The extension: scripts off (esbuild needs none; @vscode/vsce's keytar and vsce-sign are for publishing).
npm ci --prefix "$repo/vscode-extension" --ignore-scripts --no-audit --no-fund

# code-server 4.100.3 pins @vscode/ripgrep 1.15.11 (lib/vscode/npm-shrinkwrap.json), which looks for
# ripgrep-v13.0.0-10-<target>.tar.gz in $TMPDIR/vscode-ripgrep-cache-1.15.11 before downloading.
rg_bin="$(command -v rg || true)"
if [ -z "$rg_bin" ]; then
    echo "tests/vscode/install.sh: install Debian's ripgrep first (apt-get install -y ripgrep)" >&2
    exit 1
fi
case "$(uname -m)" in
    x86_64) target=x86_64-unknown-linux-musl ;;
    aarch64) target=aarch64-unknown-linux-musl ;;
    *) echo "tests/vscode/install.sh: no ripgrep target for $(uname -m)" >&2; exit 1 ;;
esac
cache="${TMPDIR:-/tmp}/vscode-ripgrep-cache-1.15.11"
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
cp "$rg_bin" "$staging/rg"
mkdir -p "$cache"
tar czf "$cache/ripgrep-v13.0.0-10-$target.tar.gz" -C "$staging" rg

# code-server's postinstall refuses to run as root without unsafe-perm, and node-pty's runs `npx node-gyp`.
# argon2 (which code-server loads at start) would first try a prebuilt binary from GitHub: build it instead.
# node-gyp takes Node's headers from the installed Node (Debian/NodeSource: /usr/include/node), not the web.
if [ -f "$(dirname "$(dirname "$(command -v node)")")/include/node/node.h" ]; then
    export npm_config_nodedir="$(dirname "$(dirname "$(command -v node)")")"
fi
npm_config_unsafe_perm=true npm_config_yes=true npm_config_build_from_source=true \
    npm ci --prefix "$repo/tests/vscode" --no-audit --no-fund
