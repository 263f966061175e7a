#!/usr/bin/env bash
# Runs one command of the workspace: `bash scripts/with-node.sh COMMAND [ARGS...]`. Every root npm
# script goes through it, so `npm test`, `npm start` and the others work whatever Node runs npm.
#
# 1. `scripts/use-node.sh` makes sure a Node.js of 22.19 or newer is first on PATH: with an older
#    Node (20, say) it uses Node 24 from `.tools/`, downloading it from the npm registry the first
#    time (`npm install` already did that, in the root `postinstall`).
# 2. NODE_OPTIONS gets `--conditions=@pgflows/source`, so that inside the repository `pgflows`,
#    `@pgflows/pg-durable` and `@pgflows/testing` resolve to their TypeScript sources (`src/*.ts`)
#    rather than to the compiled `dist/` that only `npm pack` builds. Child processes inherit it.
# 3. It replaces itself with the command (exec): signals and the exit status are the command's.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: bash scripts/with-node.sh COMMAND [ARGS...]" >&2
  exit 2
fi

# shellcheck source=./use-node.sh
source "$(dirname "${BASH_SOURCE[0]}")/use-node.sh"

case " ${NODE_OPTIONS:-} " in
  *" --conditions=@pgflows/source "*) ;;
  *) export NODE_OPTIONS="--conditions=@pgflows/source${NODE_OPTIONS:+ $NODE_OPTIONS}" ;;
esac

exec "$@"
