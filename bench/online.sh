# The `online` step of bench/run.sh (issue 14: backups of a live tree or image file with
# before-image capture). Sourced by run.sh; uses its globals (MODE, RUN, REPS, BFS, TREE,
# BENCH_DIR, BENCH_SRC) and lib.sh. See bench/README.md, "The online step".
#
# Sources live on a dedicated ext4 on a loop device (the capture marks the WHOLE filesystem
# holding the source, so it must never be /): the Linux tree and an image file (1 GiB, quick:
# 256 MiB) of the first bytes of a reproducible tar of the tree (compressible, never sparse).
# Per source and repetition: `bfs backup` offline and `--online` (in alternating order),
# each with the writer (bench/online-writer.c: paced random 4 KiB pwrites) running during
# the backup, then the writer alone for as long as the online backup took. Then the first
# generation of each is mounted cold and read (dd / cat and bench/pread.mjs).

ONLINE_RATE=${BENCH_ONLINE_RATE:-2000}   # writes/s of the writer (README: why 2,000)
# How the image is put in the page cache before each backup and before the writer alone:
# `small` (default): read with POSIX_FADV_RANDOM (online-writer --warm), so its pages sit in
# small folios, as a live image's working set does; `cat`: read sequentially, which on this
# kernel (ext4 large folios, Linux >= 6.16) leaves 2 MiB folios, into which a 4 KiB write
# costs the writer ~35-48 µs with no backup running (2026-12-03: 47.8 µs "writer alone",
# against 5.6-8 µs after the `small` warm or on an uncached image), not the issue's ~3 µs.
ONLINE_WARM=${BENCH_ONLINE_WARM:-small}
# BENCH_ONLINE_READS=0: skip the reads of the generations (the last rows), for A/B runs of the
# backup and writer rows only (e.g. BFS_ONLINE_SLICE_US=0 against the default)
ONLINE_READS=${BENCH_ONLINE_READS:-1}
ONLINE_DIR=""      # $RUN/online while it exists
ONLINE_DEV=""      # the loop device
ONLINE_MNT=""      # where its filesystem is mounted
ONLINE_WRITER=""   # the compiled writer
declare -A ONLINE_OK   # [NAME-MODE]=1 when the last backup of MODE succeeded (its gen1 is read)

online_log_load() { cut -d' ' -f1-3 /proc/loadavg; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# online_image PATH SIZE: the image file's content, cached: the first SIZE bytes of a tar of
# the full tree with fixed order, owners and times (the same bytes every time)
online_image() {
  local out=$1 size=$2 dir=$BENCH_DIR/corpus/$MODE stamp
  stamp="online-img-v1 $size $(tarball_id)"
  if [ -f "$dir/online-img.ok" ] && [ "$(cat "$dir/online-img.ok")" = "$stamp" ] && [ -f "$dir/online-img.raw" ]; then
    ln -f "$dir/online-img.raw" "$out"; return
  fi
  log "online: building the $size image file (first bytes of a tar of the tree)"
  rm -f "$dir/online-img.raw" "$dir/online-img.ok"
  mkdir -p "$dir"
  tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$BENCH_DIR/corpus/full/tree" -cf - . 2>/dev/null \
    | head -c "$size" >"$dir/online-img.raw.tmp"
  [ "$(stat -c %s "$dir/online-img.raw.tmp")" = "$(numfmt --from=iec "$size")" ] || die "online: the tar of the tree is shorter than $size"
  mv "$dir/online-img.raw.tmp" "$dir/online-img.raw"
  echo "$stamp" >"$dir/online-img.ok"
  ln -f "$dir/online-img.raw" "$out"
}

# online_setup: ext4 with tree/ and image.raw, built by mkfs.ext4 -d (libext2fs writes
# 78k files in ~30 s; cp -a through the kernel took 30-60 s of erratic CPU here), then
# attached to a loop device and mounted. Sets ONLINE_*.
online_setup() {
  local fssize imgsize stage
  if [ "$MODE" = full ]; then fssize=4G imgsize=1G; else fssize=1G imgsize=256M; fi
  ONLINE_DIR=$RUN/online; stage=$ONLINE_DIR/stage; ONLINE_MNT=$ONLINE_DIR/mnt
  mkdir -p "$stage" "$ONLINE_MNT"
  ONLINE_WRITER=$ONLINE_DIR/online-writer
  cc -O2 -o "$ONLINE_WRITER" "$BENCH_SRC/online-writer.c" || die "online: cannot compile bench/online-writer.c"
  cp -al "$TREE" "$stage/tree" || die "online: staging the tree failed"
  online_image "$stage/image.raw" "$imgsize"
  log "online: making a $fssize ext4 holding the tree and the $imgsize image"
  truncate -s "$fssize" "$ONLINE_DIR/fs.ext4"
  mkfs.ext4 -q -F -L bfs-online -E root_owner=0:0 -d "$stage" "$ONLINE_DIR/fs.ext4" || die "online: mkfs.ext4 -d failed"
  rm -rf "$stage"
  ONLINE_DEV=$(losetup --find --show "$ONLINE_DIR/fs.ext4") || die "online: losetup failed"
  mount "$ONLINE_DEV" "$ONLINE_MNT" || die "online: mounting $ONLINE_DEV failed"
  rec_meta online_fs "{\"size\":\"$fssize\",\"image\":\"$imgsize\",\"rate\":$ONLINE_RATE,\"device\":\"$ONLINE_DEV\"}"
  log "online: $ONLINE_DEV mounted at $ONLINE_MNT; writer rate $ONLINE_RATE writes/s"
}

# online_teardown: called by cleanup() (lib.sh) after the processes we started are stopped
online_teardown() {
  [ -n "$ONLINE_DIR" ] || return 0
  local i
  if [ -n "$ONLINE_MNT" ] && is_mounted "$ONLINE_MNT"; then
    for i in 1 2 3 4 5; do umount "$ONLINE_MNT" 2>/dev/null && break; sleep 1; done
    is_mounted "$ONLINE_MNT" && { log "online: lazy unmount of $ONLINE_MNT"; umount -l "$ONLINE_MNT"; }
  fi
  if [ -n "$ONLINE_DEV" ]; then losetup -d "$ONLINE_DEV" 2>/dev/null || log "WARNING: online: losetup -d $ONLINE_DEV failed"; fi
  rm -rf "$ONLINE_DIR"
  ONLINE_DIR="" ONLINE_DEV="" ONLINE_MNT=""
}

# online_stale: unmounts and detaches what a killed run left ($RUN/online/{mnt,fs.ext4})
online_stale() {
  local d
  if is_mounted "$RUN/online/mnt"; then log "online: unmounting a stale $RUN/online/mnt"; umount "$RUN/online/mnt" || umount -l "$RUN/online/mnt"; fi
  [ -f "$RUN/online/fs.ext4" ] || return 0
  for d in $(losetup -j "$RUN/online/fs.ext4" -O NAME -n 2>/dev/null); do log "online: detaching a stale $d"; losetup -d "$d"; done
}

# rec_num CORPUS METRIC TOOL REP VALUE: rec, unless VALUE is not a number (a figure missing
# from a tool's output is then absent, not a broken record)
rec_num() { [[ "$5" =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] && rec "$@"; return 0; }

# json_get FILE EXPR: a value from a JSON file (EXPR in terms of j), empty when absent
json_get() { node -e 'try{const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").pop());const v=('"$2"');if(v!==undefined&&v!==null)console.log(v)}catch{}' "$1"; }

# writer_rec NAME TOOL REP FILE: records the writer's figures
writer_rec() {
  local name=$1 tool=$2 rep=$3 f=$4 k v
  for k in p50_us p99_us max_us writes_per_s writes max_lag_ms distinct_blocks files_touched; do
    v=$(json_get "$f" "j.$k"); [ -n "$v" ] && rec_num "$name" "w_$k" "$tool" "$rep" "$v"
  done
  v=$(json_get "$f" 'j.distinct_blocks*4096'); [ -n "$v" ] && rec_num "$name" w_bound_bytes "$tool" "$rep" "$v"
}

# online_backup NAME KIND(tree|img) MODE(offline|online) REP SRC: one backup with the
# writer running; records the backup's and the writer's figures. Sets OB_WALL ("" if failed).
online_backup() {
  local name=$1 kind=$2 mode=$3 rep=$4 src=$5
  local repo=$RUN/repo/$name-$mode logf=$RUN/logs/$name-$mode-$rep t0f=$ONLINE_DIR/t0 args=() bpid wpid rc t0 t1 l0 msg v i
  OB_WALL=""; ONLINE_OK[$name-$mode]=0
  rm -rf "$repo" "$t0f"
  # format 1 (the default until 2026-12-03): these rows and bi_stored_bytes (format 1's
  # gens/N/bilog files, below) stay comparable with earlier runs
  "$BFS" --repo "$repo" init $([ "${BFS_HAS[format2]:-0}" = 1 ] && echo --format 1) >"$logf.init" 2>&1 || { rec_status "$name" backup_wall_s "$mode" fail "init failed: $(tail_log "$logf.init")"; return 1; }
  [ "$kind" = img ] && args+=(--volume)
  args+=("$src")
  [ "$mode" = online ] && args+=(--online --t0-file "$t0f")
  online_warm "$kind" "$src"
  l0=$(load1)
  if [ "$mode" = online ]; then  # the writer waits for T0 (bfs creates --t0-file once the mark is set)
    "$ONLINE_WRITER" --rate "$ONLINE_RATE" --seed "$rep" --start-file "$t0f" "${WRITER_ARGS[@]}" >"$logf.writer" 2>&1 &
    wpid=$!; track_pid "$wpid"
  fi
  t0=$EPOCHREALTIME
  /usr/bin/time -v -o "$logf.time" "$BFS" --repo "$repo" backup "${args[@]}" --json >"$logf.json" 2>"$logf.err" &
  bpid=$!; track_pid "$bpid"
  # bfs itself (the child of /usr/bin/time, which a TERM would orphan) is stopped by cleanup too
  for ((i = 0; i < 100; i++)); do v=$(pgrep -P "$bpid" | head -1); [ -n "$v" ] && { track_pid "$v"; break; }; sleep 0.02; done
  if [ "$mode" = offline ]; then  # started with the backup
    "$ONLINE_WRITER" --rate "$ONLINE_RATE" --seed "$rep" "${WRITER_ARGS[@]}" >"$logf.writer" 2>&1 &
    wpid=$!; track_pid "$wpid"
  fi
  [ "$mode" = online ] && listener_sched "$name" "$rep" "$bpid" "$t0f"
  wait "$bpid"; rc=$?
  t1=$EPOCHREALTIME
  kill -TERM "$wpid" 2>/dev/null; wait "$wpid"
  rec_num "$name" load1_start "$mode" "$rep" "$l0"
  rec_num "$name" load1_end "$mode" "$rep" "$(load1)"
  if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
    msg=$(grep -m1 '^bfs: ' "$logf.err" || tail_log "$logf.err")
    if [ "$mode" = online ] && [ "$kind" = img ] && grep -qE -- "--online (applies to file backups|.*not covered)|unknown option '--online'" "$logf.err"; then
      rec_status "$name" backup_wall_s online na "not supported: $msg"
    else rec_status "$name" backup_wall_s "$mode" fail "exit $rc: $msg"; fi
    log "   $name $mode #$rep: backup exit $rc: $msg"
    return 1
  fi
  OB_WALL=$(fsub "$t0" "$t1"); ONLINE_OK[$name-$mode]=1
  rec_num "$name" backup_wall_s "$mode" "$rep" "$OB_WALL"
  rec_num "$name" backup_rss_mib "$mode" "$rep" "$(awk -F': ' '/Maximum resident set size/{printf "%.1f", $2/1024}' "$logf.time")"
  rec_num "$name" repo_mb "$mode" "$rep" "$(du -sb "$repo" | awk '{printf "%.1f", $1/1e6}')"
  [ "$rc" = 3 ] && rec_status "$name" backup_exit "$mode" text "exit 3: $(json_get "$logf.json" 'j.online&&j.online.uncovered.length') file(s) not covered"
  writer_rec "$name" "$mode" "$rep" "$logf.writer"
  if [ "$mode" = online ]; then
    v=$(json_get "$logf.json" 'j.online&&j.online.captured'); [ "$v" = true ] || rec_status "$name" bi_bytes online fail "no capture: $(json_get "$logf.json" 'JSON.stringify(j.online)')"
    for v in imageBytes:bi_bytes events:bi_events images:bi_images biRecords:bi_kept_records preReads:bi_prereads preReadBytes:bi_preread_bytes; do
      rec_num "$name" "${v#*:}" online "$rep" "$(json_get "$logf.json" "j.online.${v%%:*}")"
    done
    # once the BI log is part of the generation: the blocks kept in it, and its file's size
    # (format 1: gens/NNNNNNNN/bilog, zstd; absent when nothing was kept)
    rec_num "$name" bi_kept_bytes online "$rep" "$(json_get "$logf.json" 'j.online.biBlocks===undefined?undefined:j.online.biBlocks*4096')"
    if [ -n "$(json_get "$logf.json" 'j.online.biBlocks')" ]; then
      rec_num "$name" bi_stored_bytes online "$rep" "$(find "$repo" -path '*/gens/*' -name bilog -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
    fi
  fi
  log "   $name $mode #$rep: backup ${OB_WALL} s (load $l0 → $(load1)); writer $(cat "$logf.writer")$([ "$mode" = online ] && echo "; online $(json_get "$logf.json" 'JSON.stringify(j.online)')")"
  return 0
}

# listener_sched NAME REP PID T0FILE: once T0 is set, the scheduling class / priority of
# the capture's listener thread (bfs-bilog) in the backup under PID (/usr/bin/time's child):
# FF/10 is SCHED_FIFO; TS/- means it did not get real-time priority (p99 then ~2 ms)
listener_sched() {
  local name=$1 rep=$2 bpid=$3 t0f=$4 i node s=""
  for ((i = 0; i < 1200; i++)); do [ -e "$t0f" ] && break; kill -0 "$bpid" 2>/dev/null || return 0; sleep 0.05; done
  node=$(pgrep -P "$bpid" | head -1)
  [ -n "$node" ] && s=$(ps -L -o cls=,rtprio=,comm= -p "$node" 2>/dev/null | awk '$3 == "bfs-bilog" {print $1 "/" $2; exit}')
  rec_status "$name" listener_sched online text "${s:-not found}"
}

# online_warm KIND SRC: the source into the page cache (tree: cat; img: per ONLINE_WARM, from
# an empty cache, so that the backup, the other mode's and the writer alone start alike)
online_warm() {
  if [ "$1" = img ]; then
    sync; drop_caches
    if [ "$ONLINE_WARM" = cat ]; then warm "$2"; else "$ONLINE_WRITER" --warm "$2" || die "online: online-writer --warm failed"; fi
  else warm "$2"; fi
  sync
}

# online_alone NAME REP SECONDS: the writer with no backup running
online_alone() {
  local name=$1 rep=$2 secs=$3 logf=$RUN/logs/$1-none-$2 l0
  [ "${NAME#online_}" = img ] && online_warm img "$ONLINE_SRC"
  l0=$(load1)
  if ! "$ONLINE_WRITER" --rate "$ONLINE_RATE" --seed "$rep" --duration "$secs" "${WRITER_ARGS[@]}" >"$logf.writer" 2>&1; then
    rec_status "$name" w_p50_us none fail "writer failed: $(tail_log "$logf.writer")"; return 1
  fi
  rec_num "$name" load1_start none "$rep" "$l0"; rec_num "$name" load1_end none "$rep" "$(load1)"
  writer_rec "$name" none "$rep" "$logf.writer"
  log "   $name writer alone #$rep (${secs} s): $(cat "$logf.writer")"
}

# online_read NAME KIND MODE FILE_IN_GEN REP: reads generation 1 of MODE's repository through
# a cold mount: img: dd of the image, then 2000 random preads (cold, warm) on a fresh mount;
# tree: cat of the writer's files, then the preads on the largest of them
online_read() {
  local name=$1 kind=$2 mode=$3 rel=$4 rep=$5 repo=$RUN/repo/$1-$3 mnt=$RUN/mnt/$1-$3 logf=$RUN/logs/$1-read-$3-$5 out
  if [ "${ONLINE_OK[$name-$mode]:-0}" != 1 ]; then
    [ "$rep" = 1 ] && { rec_status "$name" read_dd_s "$mode" text "— (no generation)"; rec_status "$name" pread_cold_median_us "$mode" text "—"; }
    return 0
  fi
  if ! online_mount "$repo" "$mnt" "$logf"; then rec_status "$name" read_dd_s "$mode" fail "mount failed: $(tail_log "$logf.mount")"; return 1; fi
  drop_caches
  stopwatch_start
  if [ "$kind" = img ]; then dd if="$mnt/$rel" of=/dev/null bs=1M status=none 2>"$logf.dd"
  else (cd "$mnt" && xargs -d '\n' -r cat <"$ONLINE_DIR/list.rel" >/dev/null) 2>"$logf.dd"; fi
  local rc=$?
  stopwatch_stop
  if [ "$rc" = 0 ]; then rec_num "$name" read_dd_s "$mode" "$rep" "$WALL"; else rec_status "$name" read_dd_s "$mode" fail "read failed: $(tail_log "$logf.dd")"; fi
  log "   $name read $mode #$rep: $([ "$kind" = img ] && echo dd || echo cat) ${WALL} s"
  online_umount "$mnt"
  online_mount "$repo" "$mnt" "$logf" || return 1
  drop_caches
  for st in cold warm; do
    if out=$(node "$BENCH_SRC/pread.mjs" "$mnt/$rel" 2000 42 2>&1); then
      rec_num "$name" "pread_${st}_median_us" "$mode" "$rep" "$(json_get <(echo "$out") j.median_us)"
      rec_num "$name" "pread_${st}_p99_us" "$mode" "$rep" "$(json_get <(echo "$out") j.p99_us)"
      log "   $name pread $st $mode #$rep: $out"
    else rec_status "$name" "pread_${st}_median_us" "$mode" fail "pread failed: $out"; break; fi
  done
  online_umount "$mnt"
}
online_mount() {  # online_mount REPO MNT LOG: bfs mount gen1, waits until it is mounted
  local repo=$1 mnt=$2 logf=$3 i pid
  mkdir -p "$mnt"
  "$BFS" --repo "$repo" mount gen1 "$mnt" >>"$logf.mount" 2>&1 9>&- || return 1
  for ((i = 0; i < 1200; i++)); do is_mounted "$mnt" && break; sleep 0.1; done
  is_mounted "$mnt" || return 1
  pid=$(mount_pid "$mnt"); [ -n "$pid" ] && track_pid "$pid"
  OM_PID=$pid
  return 0
}
online_umount() {
  "$BFS" umount "$1" >/dev/null 2>&1 || force_umount "$1"
  [ -n "${OM_PID:-}" ] && wait_pid_gone "$OM_PID" 10
  OM_PID=""
}

# online_source NAME KIND SRC: every repetition, then the reads
online_source() {
  local name=$1 kind=$2 src=$3 rep mode order secs rel
  NAME=$name   # (step_begin / step_end print it)
  ONLINE_SRC=$src
  [ "$kind" = img ] && rec_meta online_img_warm "\"$ONLINE_WARM\""
  step_begin "online: $name: backup offline vs --online with a writer at $ONLINE_RATE random 4 KiB writes/s, then the writer alone; median of $REPS"
  # the writer's bytes: slices of the image's cached content (a tar of the tree), so what it
  # leaves in the source compresses like the source (a later run's before-images are of it)
  local donor=$BENCH_DIR/corpus/$MODE/online-img.raw
  if [ "$kind" = img ]; then WRITER_ARGS=(--data "$donor" "$src"); rel=$(basename "$src")
  else
    # every 20th file of 4 KiB or more (sorted): ~1,900 files of the full tree, ~270 of quick
    (cd "$src" && find . -type f -size +4095c | LC_ALL=C sort | awk 'NR % 20 == 0' | sed 's|^\./||') >"$ONLINE_DIR/list.rel"
    sed "s|^|$src/|" "$ONLINE_DIR/list.rel" >"$ONLINE_DIR/list"
    WRITER_ARGS=(--data "$donor" --list "$ONLINE_DIR/list")
    rel=$(cd "$src" && xargs -d '\n' stat -c '%s %n' <"$ONLINE_DIR/list.rel" | sort -n | tail -1 | cut -d' ' -f2-)
    rec_meta "${name}_writer_files" "{\"files\":$(wc -l <"$ONLINE_DIR/list"),\"largest\":$(json_str "$rel")}"
  fi
  for ((rep = 1; rep <= REPS; rep++)); do
    # alternate the order so that a load drift is charged to both
    if [ $((rep % 2)) = 1 ]; then order="offline online"; else order="online offline"; fi
    secs=""
    for mode in $order; do
      online_backup "$name" "$kind" "$mode" "$rep" "$src"
      [ -n "$OB_WALL" ] && { [ "$mode" = online ] || [ -z "$secs" ]; } && secs=$OB_WALL
    done
    # the writer alone, as long as the online backup took (the offline one if it failed), ≥ 5 s
    secs=$(awk -v s="${secs:-10}" 'BEGIN{printf "%.1f", s < 5 ? 5 : s}')
    online_alone "$name" "$rep" "$secs"
  done
  # the reads: REPS times, alternating which generation goes first
  for ((rep = 1; rep <= REPS; rep++)); do
    [ "$ONLINE_READS" = 0 ] && break
    if [ $((rep % 2)) = 1 ]; then order="offline online"; else order="online offline"; fi
    for mode in $order; do online_read "$name" "$kind" "$mode" "$rel" "$rep"; done
  done
  step_end "online: $name"
}

bench_online() {
  ONLINE_DIR=""
  online_setup
  on_list tree "${BENCH_CORPORA:-}" && online_source online_tree tree "$ONLINE_MNT/tree"
  on_list img "${BENCH_CORPORA:-}" && online_source online_img img "$ONLINE_MNT/image.raw"
  online_teardown
}
