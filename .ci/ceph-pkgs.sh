#!/usr/bin/env bash
# Installs Ceph's Debian packages for the throw-away cluster (.ci/ceph-up.sh) if any is
# missing (apt-get: root). Used by `make test-s3` and `make demo-s3`.
set -euo pipefail
PKGS="ceph-mon ceph-osd radosgw ceph-common"
missing=
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
