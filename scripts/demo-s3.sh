#!/usr/bin/env bash
# `make demo-s3` (issue 18): the main job on a repository in an S3 bucket. Without
# S3_ENDPOINT it installs Ceph's Debian packages if missing and brings up a throw-away one-node
# Ceph cluster with radosgw on 127.0.0.1 (.ci/ceph-up.sh, ~8 s, ~0.7 GB), and always removes it
# at the end. With S3_ENDPOINT (and S3_ACCESS_KEY/S3_SECRET_KEY or the AWS_* variables) it uses
# that service and leaves the demo repository there (it prints its address).
# Then: init (which creates the bucket), back up, change the tree, back up again, mount the
# first generation and browse it with normal tools, cp -a a partial restore, unmount, restore
# latest and compare, verify.
set -euo pipefail
cd "$(dirname "$0")/.."
BFS=./bin/bfs
sample=${DEMO_DIR:-/tmp/bfs-demo-s3}
mnt="$sample/mnt"
cleanup() {
  $BFS umount "$mnt" >/dev/null 2>&1 || $BFS umount --lazy "$mnt" >/dev/null 2>&1 || true
  [ -n "${CEPH_DIR:-}" ] && .ci/ceph-down.sh
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -z "${S3_ENDPOINT:-}" ]; then
  .ci/ceph-pkgs.sh
  CEPH_DIR=$(mktemp -u /var/tmp/bfs-ceph.XXXXXX)
  export CEPH_DIR
  echo "== bring up a throw-away Ceph cluster with radosgw ($CEPH_DIR; removed at the end)"
  vars=$(.ci/ceph-up.sh | tail -n 1)
  # shellcheck disable=SC2163,SC2086
  export $vars
fi
export AWS_ACCESS_KEY_ID=${S3_ACCESS_KEY:-${AWS_ACCESS_KEY_ID:-}} AWS_SECRET_ACCESS_KEY=${S3_SECRET_KEY:-${AWS_SECRET_ACCESS_KEY:-}}
repo="s3:$S3_ENDPOINT/${S3_BUCKET:-bfs-demo}/demo-$(date -u +%Y%m%dT%H%M%S)"
export BFS_REPO=$repo
echo "== repository: $repo"
rm -rf "$sample" && mkdir -p "$sample/src/etc/nginx" "$sample/src/home/alice/photos" "$sample/src/var/log" "$mnt"
src="$sample/src"
for i in $(seq 1 100); do printf 'server_name host%d.example;\nlisten %d;\n' "$i" "$((8000 + i))" > "$src/etc/nginx/site$i.conf"; done
head -c 2000000 /dev/urandom > "$src/home/alice/photos/cat.jpg"
seq 1 200000 > "$src/var/log/syslog"
ln -s ../../etc/nginx "$src/home/alice/nginx"
setfattr -n user.owner -v alice "$src/home/alice/photos/cat.jpg" 2>/dev/null || true
echo "== create the repository (format 2; the bucket is created if it does not exist)"
$BFS init --format 2
echo "== first backup"
$BFS backup "$src" --label demo-first
echo "== change the tree, then the second backup (incremental)"
echo "new line" >> "$src/var/log/syslog"
sed -i 's/listen 8001/listen 9001/' "$src/etc/nginx/site1.conf"
rm "$src/etc/nginx/site100.conf"
$BFS backup "$src" --label demo-second
echo "== generations"
$BFS generations
echo "== mount the first generation read-only and browse it"
$BFS mount latest~1 "$mnt"
ls -l "$mnt/etc/nginx" | sed -n 1,4p
echo "files in the mount: $(find "$mnt" | wc -l)"
grep -h 'listen' "$mnt/etc/nginx/site1.conf"
getfattr -n user.owner "$mnt/home/alice/photos/cat.jpg" 2>/dev/null | grep owner || true
echo "diff of var/log/syslog, the mount (first backup) against the live tree:"
diff "$mnt/var/log/syslog" "$src/var/log/syslog" || true
echo "== partial restore with cp -a from the mount (site100.conf was deleted after the first backup)"
mkdir -p "$sample/partial"
cp -a "$mnt/etc/nginx/site100.conf" "$mnt/home/alice" "$sample/partial/"
cmp "$mnt/home/alice/photos/cat.jpg" "$sample/partial/alice/photos/cat.jpg" && echo "cp -a from the mount: identical"
$BFS umount "$mnt"
echo "== unmounted; restore latest and compare with the source"
$BFS restore latest "$sample/restore"
diff -r "$src" "$sample/restore" && echo "restore of latest: identical to the source"
echo "== verify every frame"
$BFS verify
[ -n "${CEPH_DIR:-}" ] || echo "== the demo repository stays at $repo"
echo "== demo-s3 done"
