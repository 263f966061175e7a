#!/usr/bin/env bash
# Chromium for the dashboard's browser tests (packages/server/test/Dashboard.browser.test.ts, driven by
# playwright-core): Debian's `chromium` package at /usr/bin/chromium, installed with apt-get when it is
# missing (as root, or with `sudo -n`). No browser is ever downloaded by npm or Playwright.
#
# Best effort: every outcome is one `ci: chromium: ...` line, and the script exits 0 whatever happens;
# without Chromium the browser tests are skipped with one line saying why. The output of apt-get goes
# to .tmp/chromium.log.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || exit 0
log="$root/.tmp/chromium.log"
mkdir -p "$root/.tmp"
say() { echo "ci: chromium: $*"; }

executable="${PGFLOWS_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$executable" ]; then
  say "$("$executable" --version 2>/dev/null || echo "$executable") is installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  say "no $executable and no apt-get to install it with: the browser tests will be skipped"
  exit 0
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! sudo -n true 2>/dev/null; then
    say "no $executable, and installing it needs root (sudo -n refused): the browser tests will be skipped"
    exit 0
  fi
  as_root=(sudo -n)
fi
apt_get() { ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

started=$SECONDS
say "installing Debian's chromium with apt-get (log: .tmp/chromium.log)..."
if ! apt_get install -y --no-install-recommends chromium >>"$log" 2>&1; then
  apt_get update >>"$log" 2>&1
  apt_get install -y --no-install-recommends chromium >>"$log" 2>&1
fi
if [ -x "$executable" ]; then
  say "installed $("$executable" --version 2>/dev/null || echo chromium) in $((SECONDS - started)) s"
else
  say "apt-get could not install chromium (see .tmp/chromium.log): the browser tests will be skipped"
  tail -n 15 "$log" 2>/dev/null | sed 's/^/    /'
fi
exit 0
