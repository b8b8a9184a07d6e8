#!/usr/bin/env bash
# One operation of one tool, exactly as the benchmark runs it (run.sh times these
# under /usr/bin/time -v, so single commands are exec'd to keep the RSS figure theirs).
#
#   tool.sh init    TOOL REPO
#   tool.sh backup  TOOL REPO SRC NAME     NAME: archive name (borg), ignored elsewhere
#   tool.sh restore TOOL REPO DEST GEN     GEN: first generation (bfs gen1, restic snapshot id, borg archive)
#   tool.sh mount   TOOL REPO MNT GEN     returns once mounted (restic: stays in foreground)
#   tool.sh umount  TOOL MNT
#   tool.sh root    TOOL mount|restore DIR GEN SRC   path inside the mountpoint / restore dir holding SRC
#   tool.sh ls      TOOL REPO GEN SRC PATH    list directory PATH (relative to SRC) of the first backup
#   tool.sh cat     TOOL REPO GEN SRC PATH    write file PATH (relative to SRC) of the first backup to stdout
#   tool.sh compact bfs REPO                  recompress every settled unit (the compact step, issue 16)
#
# TOOL: bfs | bfs1 (bfs, repository in format 1 whatever BFS_FORMAT says) | bfs2 (bfs, format 2) |
#       bfsc (bfs: the compact step's compacted copy of the bfs repository) | bfse (bfs, an encrypted repository: init --encrypt) | tar (tar | zstd -3 -T0) | squashfs (mksquashfs zstd + squashfuse) | restic | borg
# Env: BFS (path of bin/bfs), BFS_FORMAT (bfs init --format N; unset: bfs's default, format 2 since 2026-12-03), BENCH_KIND (tree | img), BENCH_IMG (image path, img corpus)
set -euo pipefail
op=$1 tool=$2
shift 2

export RESTIC_PASSWORD=${RESTIC_PASSWORD:-bfs-bench}
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

# format 1 explicitly (format 2 is bfs's default since 2026-12-03); a bfs from before
# `init --format` (BENCH_BFS) writes format 1 only and takes no --format
if [ "$tool" = bfs1 ]; then tool=bfs BFS_FORMAT=1; fi
if [ "$tool" = bfs2 ]; then tool=bfs BFS_FORMAT=2; fi
if [ "$tool" = bfsc ]; then tool=bfs; fi
# bfse: bfs with an encrypted repository (issue 18: its cost against bfs in the same run); the
# passphrase from the environment, as restic's; key files at the real scrypt cost, as users get
if [ "$tool" = bfse ]; then tool=bfs BFS_ENCRYPT=1; export BFS_PASSWORD=${BFS_PASSWORD:-bfs-bench}; fi

case "$op:$tool" in
  init:bfs)
    if [ "${BFS_FORMAT:-}" = 1 ] && ! grep -q -- --format <<<"$("$BFS" init --help 2>&1)"; then BFS_FORMAT=; fi
    exec "$BFS" --repo "$1" init ${BFS_FORMAT:+--format "$BFS_FORMAT"} ${BFS_ENCRYPT:+--encrypt} ;;
  init:tar | init:squashfs) mkdir -p "$1" ;;
  init:restic) exec restic -q -r "$1" init ;;
  init:borg) exec borg init -e none "$1" ;;

  backup:bfs)
    if [ "$BENCH_KIND" = img ]; then exec "$BFS" --repo "$1" backup --volume "$BENCH_IMG"; fi
    exec "$BFS" --repo "$1" backup "$2" ;;
  backup:tar) tar -cf - -C "$2" . | zstd -T0 -3 -q -f -o "$1/archive.tar.zst" ;;
  backup:squashfs) exec mksquashfs "$2" "$1/image.sqfs" -comp zstd -noappend -quiet -no-progress ;;
  backup:restic) exec restic -q -r "$1" backup "$2" ;;
  backup:borg) cd "$2" && exec borg create --compression zstd,3 "$1::$3" . ;;

  restore:bfs) exec "$BFS" --repo "$1" restore "$3" "$2" ;;
  restore:tar) mkdir -p "$2" && zstd -d -q -c "$1/archive.tar.zst" | tar -xf - -C "$2" ;;
  restore:restic) exec restic -q -r "$1" restore "$3" --target "$2" ;;
  restore:borg) mkdir -p "$2" && cd "$2" && exec borg extract "$1::$3" ;;

  mount:bfs) exec "$BFS" --repo "$1" mount "$3" "$2" ;;
  mount:squashfs) exec squashfuse "$1/image.sqfs" "$2" ;;
  mount:restic) exec restic -q -r "$1" mount "$2" ;;
  mount:borg) exec borg mount "$1::$3" "$2" ;;

  umount:bfs) "$BFS" umount "$1" ;;
  umount:*) fusermount -u "$1" 2>/dev/null || umount "$1" ;;

  ls:bfs) exec "$BFS" --repo "$1" ls "$2:$4" ;;
  ls:restic) exec restic -q -r "$1" ls "$2" "$3/$4" ;;
  ls:borg) exec borg list "$1::$2" "$4" ;;
  cat:bfs) exec "$BFS" --repo "$1" cat "$2:$4" ;;
  cat:restic) exec restic -q -r "$1" dump "$2" "$3/$4" ;;
  cat:borg) exec borg extract --stdout "$1::$2" "$4" ;;

  # every unit, whatever its age (the full backup is seconds old), at bfs's default level
  compact:bfs) exec "$BFS" --repo "$1" compact --min-age 0 --json ;;

  root:restic)
    if [ "$1" = mount ]; then echo "$2/ids/$3$4"   # ids/<short id>/<absolute source path>
    else echo "$2$4"; fi ;;                       # restore --target DEST recreates the absolute path
  root:*) echo "$2" ;;

  *) echo "tool.sh: unknown operation $op for $tool" >&2; exit 64 ;;
esac
