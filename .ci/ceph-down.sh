#!/usr/bin/env bash
# Removes a cluster .ci/ceph-up.sh made in $CEPH_DIR: SIGKILLs its daemons (found by their pid
# files, and only if the process is still a ceph daemon), waits for them to go, removes the
# directory. Safe to call twice, or after a failed ceph-up.sh.
D=${CEPH_DIR:?set CEPH_DIR to the cluster directory}
[ -d "$D" ] || exit 0
pids=$(cat "$D"/run/*.pid 2>/dev/null)
for p in $pids; do
  grep -qxE 'ceph-mon|ceph-osd|radosgw' "/proc/$p/comm" 2>/dev/null && kill -KILL "$p"
done
for _ in $(seq 100); do # up to 5 s; a zombie (state Z) is gone
  alive=
  for p in $pids; do
    s=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)
    [ -n "$s" ] && [ "$s" != Z ] && alive=1
  done
  [ -z "$alive" ] && break
  sleep 0.05
done
rm -rf "$D"
