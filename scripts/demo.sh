#!/usr/bin/env bash
# The main job on the default repository: back up a sample tree, change it, back up again,
# list the generations, mount a generation and browse it with normal tools, make a partial
# restore with cp -a, unmount; then a bulk restore and verify. Run by `make demo` on a fresh
# machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BFS=./bin/bfs
repo=$($BFS --help >/dev/null; node -e "import('./dist/repo/repository.js').then(m => console.log(m.defaultRepoDir()))")
sample=${DEMO_DIR:-/tmp/bfs-demo}
echo "== repository: $repo (set BFS_REPO or --repo to use another)"
rm -rf "$sample" && mkdir -p "$sample/src/etc/nginx" "$sample/src/home/alice/photos" "$sample/src/var/log"
# A sample tree: text, a hard link, a symlink, a sparse file, an xattr, odd names.
for i in $(seq 1 200); do printf 'server_name host%d.example;\nlisten %d;\n' "$i" "$((8000 + i))" > "$sample/src/etc/nginx/site$i.conf"; done
head -c 2000000 /dev/urandom > "$sample/src/home/alice/photos/cat.jpg"
seq 1 200000 > "$sample/src/var/log/syslog"
ln "$sample/src/var/log/syslog" "$sample/src/var/log/syslog.hardlink"
ln -s ../../etc/nginx "$sample/src/home/alice/nginx"
truncate -s 1G "$sample/src/var/disk.img" && echo tail | dd of="$sample/src/var/disk.img" bs=1 seek=500000000 conv=notrunc status=none
touch "$sample/src/home/alice/$(printf 'odd\nname')"
setfattr -n user.owner -v alice "$sample/src/home/alice/photos/cat.jpg" 2>/dev/null || true
src="$sample/src"
mnt="$sample/mnt"
mkdir -p "$mnt"
# never leave the demo's mount behind, whatever fails
trap '$BFS umount "$mnt" >/dev/null 2>&1 || $BFS umount --lazy "$mnt" >/dev/null 2>&1 || true' EXIT

if [ -f "$repo/config" ]; then echo "== using the existing repository"; else echo "== create the repository"; $BFS init; fi
echo "== first backup"
$BFS backup "$src" --label demo-first
echo "== change the tree: append to a log, edit a config, add and remove files"
echo "new line" >> "$src/var/log/syslog"
sed -i 's/listen 8001/listen 9001/' "$src/etc/nginx/site1.conf"
echo "hello" > "$src/home/alice/notes.txt"
rm "$src/etc/nginx/site200.conf"
echo "== second backup (incremental: only changed blocks are stored)"
$BFS backup "$src" --label demo-second
echo "== generations"
$BFS generations
echo "== ls latest:etc/nginx | head"
# (sed, not head: head exits early, and with pipefail the writer's SIGPIPE would end the demo)
$BFS ls --source "$src" latest:etc/nginx | sed -n 1,5p
echo "== mount the first generation of this run read-only, and browse it with normal tools"
$BFS mount --source "$src" latest~1 "$mnt"
ls -l "$mnt/etc/nginx" | sed -n 1,4p
echo "files in the mount: $(find "$mnt" | wc -l)"
grep -h 'listen' "$mnt/etc/nginx/site1.conf"
stat -c '%n: %s bytes, %b blocks allocated (sparse)' "$mnt/var/disk.img"
getfattr -n user.owner "$mnt/home/alice/photos/cat.jpg" 2>/dev/null | grep owner || true
echo "diff of var/log/syslog, the mount (first backup) against the live tree:"
diff "$mnt/var/log/syslog" "$src/var/log/syslog" || true
echo "== partial restore with cp -a from the mount (site200.conf was deleted after the first backup)"
rm -rf "$sample/partial" && mkdir -p "$sample/partial"
cp -a "$mnt/etc/nginx/site200.conf" "$mnt/home/alice" "$sample/partial/"
ls -la "$sample/partial"
cmp "$mnt/home/alice/photos/cat.jpg" "$sample/partial/alice/photos/cat.jpg" && echo "cp -a from the mount: identical"
$BFS umount "$mnt"
echo "== unmounted"
echo "== restore latest and compare with the source"
rm -rf "$sample/restore"
$BFS restore --source "$src" latest "$sample/restore"
diff -r "$src" "$sample/restore" && echo "restore of latest: identical to the source"
echo "== verify every frame, and the previous generation against the live tree"
$BFS verify --source "$src" latest
$BFS verify --against "$src" latest~1 || echo "(the differences above are the changes made between the two backups)"
