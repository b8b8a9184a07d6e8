#!/usr/bin/env bash
# `make test-s3` (issue 18): installs Ceph's Debian packages if missing, brings up a throw-away
# one-node Ceph cluster with radosgw on 127.0.0.1 (.ci/ceph-up.sh), runs the S3 tests against
# it, and always tears it down (.ci/ceph-down.sh, on success, failure or Ctrl-C).
# Extra arguments go to vitest. CEPH_DIR, CEPH_MON_PORT and CEPH_RGW_PORT may be set (two
# runs side by side need different ones).
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/ceph-pkgs.sh
CEPH_DIR=${CEPH_DIR:-$(mktemp -u /var/tmp/bfs-ceph.XXXXXX)}
export CEPH_DIR
trap '.ci/ceph-down.sh' EXIT
trap 'exit 130' INT TERM
t0=$SECONDS
vars=$(.ci/ceph-up.sh | tail -n 1)
# shellcheck disable=SC2163,SC2086
export $vars
echo "test-s3: Ceph RGW up at $S3_ENDPOINT in $((SECONDS - t0)) s ($CEPH_DIR)"
./node_modules/.bin/vitest run test/s3-store.test.ts test/s3-cli.test.ts test/s3-encrypt.test.ts test/s3-cache.test.ts test/multihost.test.ts "$@"
