#!/usr/bin/env bash
# A throw-away one-node Ceph Pacific cluster for the S3 tests (issue 18): one monitor, one
# bluestore OSD on a sparse file, no mgr, and radosgw on 127.0.0.1, every file under $CEPH_DIR,
# no systemd. Prints the shell assignments the tests read (S3_ENDPOINT, S3_ACCESS_KEY,
# S3_SECRET_KEY, CEPH_DIR) on its last line; `.ci/ceph-down.sh` with the same CEPH_DIR removes it.
# Based on ../shared/research/object-store-ceph (measured there: ~7.5 s, 0.7 GB peak RSS).
# Needs: ceph-mon ceph-osd radosgw ceph-common (`.ci/test-s3.sh` installs them).
set -euo pipefail
D=${CEPH_DIR:?set CEPH_DIR to a new directory (at most 80 characters: unix sockets live in it)}
MON_PORT=${CEPH_MON_PORT:-13300} RGW_PORT=${CEPH_RGW_PORT:-17480}
AK=${S3_ACCESS_KEY:-bfstestaccesskey} SK=${S3_SECRET_KEY:-bfstestsecretkey}
die() {
  echo "ceph-up: $*" >&2
  [ -d "$D/log" ] && tail -n 5 "$D"/log/*.log >&2 2>/dev/null
  exit 1
}
# waits up to $1 seconds for the command after $2 (a name for the message) to succeed
wait_for() {
  local end=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "timed out waiting for $what"
    sleep 0.1
  done
}
http_ok() (
  exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
  printf 'GET / HTTP/1.0\r\n\r\n' >&3
  read -r -t 5 l <&3 && [[ $l == *" 200 "* ]]
)
osd_up() { ceph -c "$D/ceph.conf" --connect-timeout 5 osd dump | grep -q '^osd.0 up'; }
for b in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool; do
  command -v $b >/dev/null || die "$b is not installed (apt-get install ceph-mon ceph-osd radosgw ceph-common)"
done
[ -e "$D" ] && die "$D exists (another cluster, or a leftover: .ci/ceph-down.sh removes it)"
[ ${#D} -le 80 ] || die "CEPH_DIR is longer than 80 characters (unix socket paths are limited to 107 bytes)"
for p in $MON_PORT $RGW_PORT; do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && die "port $p is in use (set CEPH_MON_PORT / CEPH_RGW_PORT)"; done
mkdir -p "$D"/{run,log,mon/ceph-a,osd/ceph-0,rgw,crash}
FSID=$(cat /proc/sys/kernel/random/uuid) OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
# paxos_propose_interval 0.1 (default 1 s: 15 s to start, 8 s for the first bucket); pg num 8
# (32 takes RGW's pools past mon_max_pg_per_osd); msgr v2 on IPv4 only; the CLI tools get no
# admin socket so that parallel calls do not clash.
cat >"$D/ceph.conf" <<CONF
[global]
fsid=$FSID
mon_host=[v2:127.0.0.1:$MON_PORT]
public_addr=127.0.0.1
cluster_addr=127.0.0.1
ms_bind_ipv6=false
ms_bind_msgr1=false
auth_allow_insecure_global_id_reclaim=false
keyring=$D/\$name.keyring
run_dir=$D/run
admin_socket=$D/run/\$name.asok
pid_file=$D/run/\$name.pid
log_file=$D/log/\$name.log
mon_cluster_log_file=$D/log/cluster.log
crash_dir=$D/crash
osd_pool_default_size=1
osd_pool_default_min_size=1
osd_pool_default_pg_num=8
osd_pool_default_pgp_num=8
osd_pool_default_pg_autoscale_mode=off
osd_crush_chooseleaf_type=0
mon_allow_pool_size_one=true
mon_warn_on_pool_no_redundancy=false
mon_max_pg_per_osd=1000
mon_data_avail_warn=2
mon_data_avail_crit=1
paxos_propose_interval=0.1
[client]
admin_socket=
[mon]
mon_data=$D/mon/\$cluster-\$id
[osd]
osd_data=$D/osd/\$cluster-\$id
osd_objectstore=bluestore
osd_memory_target=939524096
bluestore_block_path=$D/osd/\$cluster-\$id/block.file
bluestore_block_size=10737418240
bluestore_block_create=true
[client.rgw.gw]
admin_socket=$D/run/\$name.asok
rgw_frontends=beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw_data=$D/rgw
CONF
A=(-c "$D/ceph.conf")
ceph-authtool --create-keyring "$D/mon.a.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$D/client.admin.keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$D/mon.a.keyring" --import-keyring "$D/client.admin.keyring" >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$D/monmap" >/dev/null
ceph-mon "${A[@]}" --mkfs -i a --monmap "$D/monmap" --keyring "$D/mon.a.keyring" 2>>"$D/log/stderr.log" || die "ceph-mon --mkfs failed"
ceph-mon "${A[@]}" -i a 2>>"$D/log/stderr.log" || die "ceph-mon did not start"
wait_for 30 "the monitor" ceph "${A[@]}" --connect-timeout 2 mon stat
ceph-authtool --create-keyring "$D/osd.0.keyring" --gen-key -n osd.0 >/dev/null
echo "{\"cephx_secret\": \"$(ceph-authtool -p -n osd.0 "$D/osd.0.keyring")\"}" |
  ceph "${A[@]}" osd new "$OSD_UUID" -i - | grep -qx 0 || die "ceph osd new failed"
cp "$D/osd.0.keyring" "$D/osd/ceph-0/keyring"
ceph-osd "${A[@]}" -i 0 --mkfs --osd-uuid "$OSD_UUID" >>"$D/log/osd-mkfs.log" 2>&1 || die "ceph-osd --mkfs failed"
ceph-osd "${A[@]}" -i 0 2>>"$D/log/stderr.log" || die "ceph-osd did not start"
wait_for 60 "the OSD" osd_up
ceph "${A[@]}" auth get-or-create client.rgw.gw mon 'allow rw' osd 'allow rwx' -o "$D/client.rgw.gw.keyring"
radosgw "${A[@]}" -n client.rgw.gw 2>>"$D/log/stderr.log" || die "radosgw did not start"
wait_for 60 "radosgw on port $RGW_PORT" http_ok "$RGW_PORT"
radosgw-admin "${A[@]}" user create --uid=bfs-test --display-name=bfs-test --access-key="$AK" --secret-key="$SK" >/dev/null || die "radosgw-admin user create failed"
echo "S3_ENDPOINT=http://127.0.0.1:$RGW_PORT S3_ACCESS_KEY=$AK S3_SECRET_KEY=$SK CEPH_DIR=$D"
