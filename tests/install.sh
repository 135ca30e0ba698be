#!/usr/bin/env bash
# Installs what the whole test suite needs beyond Go, so that no test is
# skipped: redis-server, Chromium and lua5.1 (Debian or Ubuntu packages;
# Node.js and npm too when node is missing) and the Node packages of
# tests/browser (playwright-core) and tests/node (ws), with npm ci.
# Runs as root or through sudo; safe to run again. .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)  # the redis broker's tests
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || packages+=(chromium)      # tests/browser_test.go
command -v lua5.1 >/dev/null 2>&1 || packages+=(lua5.1)              # the pattern matcher against the reference
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)            # tests/browser and tests/node
if [ "${#packages[@]}" -gt 0 ]; then
  echo "== apt-get install ${packages[*]}"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

echo "== npm ci --prefix tests/browser   (node $(node --version))"
npm ci --prefix tests/browser --no-audit --no-fund
echo "== npm ci --prefix tests/node"
npm ci --prefix tests/node --no-audit --no-fund
