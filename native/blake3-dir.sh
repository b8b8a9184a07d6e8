#!/bin/sh
# Finds BLAKE3's official C sources as Debian's librust-blake3-dev ships them
# (/usr/share/cargo/registry/blake3-<version>/c; the newest version if several are installed)
# and points the symlink native/blake3-src at them, so that binding.gyp names them by a
# relative path (gyp puts the object of an absolute source path where make cannot find it).
# Prints that directory. Exits 1 with one line on stderr when the package is missing.
# Used by the Makefile (before node-gyp) and by binding.gyp.
root=${BLAKE3_REGISTRY:-/usr/share/cargo/registry}
dir=$(ls -d "$root"/blake3-*/c 2>/dev/null | sort -V | tail -n 1)
if [ -z "$dir" ] || [ ! -f "$dir/blake3.c" ] || [ ! -f "$dir/blake3.h" ]; then
  echo "bfs: BLAKE3 C sources not found in $root/blake3-*/c: install the Debian package librust-blake3-dev (make deps)" >&2
  exit 1
fi
here=$(dirname "$0")
ln -sfn "$dir" "$here/blake3-src" || exit 1
echo "$dir"
