# bfs — everything a fresh Debian machine needs is installed by these targets.
SHELL := /bin/bash
# librust-blake3-dev: BLAKE3's official C sources, compiled into the addon (native/blake3-dir.sh);
# b3sum: the Rust BLAKE3 tool, the tests' independent oracle for it; strace: the tests check
# a backup's fsync order under it.
APT_PKGS := fuse libfuse2 libfuse-dev libzstd-dev libsodium-dev pkg-config build-essential python3 attr rsync e2fsprogs util-linux procps zstd librust-blake3-dev b3sum xfsprogs zsh man-db systemd strace
PREFIX ?= /usr/local
# Node's own headers (Debian's nodejs ships them in /usr/include/node): node-gyp must not
# try to download them, since this machine reaches only the npm and Debian registries.
NODEDIR ?= $(shell d=$$(dirname $$(dirname $$(readlink -f $$(command -v node)))); [ -f $$d/include/node/node_api.h ] && echo $$d)
export npm_config_nodedir := $(NODEDIR)

.PHONY: all deps build docs native native-test test test-s3 test-load demo demo-s3 bench bench-quick bench-online bench-many bench-admin bench-tape bench-crash bench-compact bench-compact-size bench-merge install uninstall clean

all: build

# System packages (FUSE helper and libfuse2, getfattr/setfattr for the tests) and npm packages.
deps: node_modules/.bfs-deps node_modules/.bfs-apt

# Its own stamp, remade when this Makefile (APT_PKGS) changes, so that a checkout built before
# a package joined the list gets it without reinstalling the npm packages.
node_modules/.bfs-apt: Makefile
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi
	@mkdir -p node_modules && touch $@

node_modules/.bfs-deps: package.json package-lock.json patches/fuse-native+2.2.6.patch | node_modules/.bfs-apt
	@# a changed patch cannot apply over the previously patched copy: let npm fetch it afresh
	rm -rf node_modules/fuse-native
	npm install --no-audit --no-fund
	@touch $@

# native/binding.gyp builds bfs_native.node (with BLAKE3 from Debian's librust-blake3-dev,
# found by blake3-dir.sh) and fuse-native's patched binding, fuse.node (fuse-native.c,
# patched by `make deps`, against the system libfuse); fuse-native loads the latter from its
# own build/Release/, so it is copied there (again after every reinstall of fuse-native).
native/build/Release/bfs_native.node native/build/Release/fuse.node native/build/Release/bfs-bilog-wd &: $(wildcard native/*.c native/*.h) native/binding.gyp native/blake3-dir.sh node_modules/.bfs-deps node_modules/.bfs-apt
	@sh native/blake3-dir.sh >/dev/null
	cd native && ../node_modules/.bin/node-gyp rebuild $(if $(NODEDIR),--nodedir=$(NODEDIR)) >/dev/null

node_modules/fuse-native/build/Release/fuse.node: native/build/Release/fuse.node
	mkdir -p $(@D) && cp $< $@

native: native/build/Release/bfs_native.node native/build/Release/bfs-bilog-wd node_modules/fuse-native/build/Release/fuse.node

# dist/cli/bfs.cjs: the whole CLI in one module (esbuild), what bin/bfs runs (through
# dist/cli/load.cjs, which compiles it with a V8 code cache, one per set of Node options,
# taken by scripts/code-cache.mjs: issue 15, mount ready). CommonJS, not ESM: Node 20 takes
# code caches of scripts only, and a CommonJS bundle loads the builtins of a module reached
# by a dynamic import() when that import runs, not at start-up. commander and lru-cache are
# bundled too (no ESM resolution, no CommonJS translation). Loading ~130
# separate ES modules cost `bfs ls` 0.3-0.4 s of its ~0.5 s here (resolution, one file
# each, compile); one file loads in ~0.1 s. Workers (repo/worker.js) and the tests use tsc's
# dist/ and src/. The bundle sits one level below dist/ as every module did, so the relative
# URLs in the code (package.json, native addon, worker, watchdog) resolve the same from it.
# --minify-whitespace drops the comments (names stay, for stack traces): the bundle is then
# ASCII, which V8 reads and scans faster (`bfs ls --help` 178 -> 165 ms of CPU per run).
# (The commands are package.json's "build" script, so that `npm run build` makes the same.)
build: deps native
	npm run -s build

# The native read path under threads, without Node or FUSE: native/test/nread_stress.c, built
# with ThreadSanitizer and with AddressSanitizer + UBSan, a few seconds each.
NATIVE_TEST_SECONDS ?= 4
STRESS_SRC := native/test/nread_stress.c native/nread.c
STRESS_CFLAGS := -std=gnu11 -O1 -g -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64
native/build/test/nread_stress_tsan: $(STRESS_SRC) native/nread.h
	@mkdir -p $(@D)
	$(CC) $(STRESS_CFLAGS) -fsanitize=thread -o $@ $(STRESS_SRC) -lzstd -lpthread
native/build/test/nread_stress_asan: $(STRESS_SRC) native/nread.h
	@mkdir -p $(@D)
	$(CC) $(STRESS_CFLAGS) -fsanitize=address,undefined -fno-sanitize-recover=undefined -o $@ $(STRESS_SRC) -lzstd -lpthread

# The BI capture engine on a loop-mounted ext4 (native/test/bilog_test.c, run by
# bilog_test.sh; skipped when not root or before Linux 6.14), with a 3 MiB ring so that its
# flusher wraps around and the listener waits for room, and the ring faulted in 8 KiB at a
# time 64 KiB ahead, so that records keep meeting the pages being faulted in.
BILOG_TEST_SRC := native/test/bilog_test.c native/bilog.c
BILOG_TEST_DEPS := $(BILOG_TEST_SRC) native/bilog.h native/bilog_wd.h native/xxh64.h native/build/test/bfs-bilog-wd
# the watchdog the engine spawns, next to the test programs (where it looks for it)
native/build/test/bfs-bilog-wd: native/bilog_wd.c native/bilog_wd.h
	@mkdir -p $(@D)
	$(CC) $(STRESS_CFLAGS) -o $@ native/bilog_wd.c
native/build/test/bilog_test_tsan: $(BILOG_TEST_DEPS)
	@mkdir -p $(@D)
	$(CC) $(STRESS_CFLAGS) -DRING_BYTES='(3u << 20)' -DPREFAULT_STEP=8192 -DPREFAULT_LEAD=65536 -DNBUCKETS_BITS0=2 -fsanitize=thread -o $@ $(BILOG_TEST_SRC) -lpthread
native/build/test/bilog_test_asan: $(BILOG_TEST_DEPS)
	@mkdir -p $(@D)
	$(CC) $(STRESS_CFLAGS) -DRING_BYTES='(3u << 20)' -DPREFAULT_STEP=8192 -DPREFAULT_LEAD=65536 -DNBUCKETS_BITS0=2 -fsanitize=address,undefined -fno-sanitize-recover=undefined -o $@ $(BILOG_TEST_SRC) -lpthread

# The native readdir's reads of a DIR piece and the stat cache's listings kept as pieces
# (native/test/dirlist_fuzz.c: damaged payloads read three ways, lookups under publishing).
DIRLIST_FUZZ_SRC := native/test/dirlist_fuzz.c native/dirlist.c native/statcache.c
DIRLIST_FUZZ_DEPS := $(DIRLIST_FUZZ_SRC) native/dirlist.h native/statcache.h
native/build/test/dirlist_fuzz_tsan: $(DIRLIST_FUZZ_DEPS)
	@mkdir -p $(@D)
	$(CC) $(STRESS_CFLAGS) -fsanitize=thread -o $@ $(DIRLIST_FUZZ_SRC) -lpthread
native/build/test/dirlist_fuzz_asan: $(DIRLIST_FUZZ_DEPS)
	@mkdir -p $(@D)
	$(CC) $(STRESS_CFLAGS) -fsanitize=address,undefined -fno-sanitize-recover=undefined -o $@ $(DIRLIST_FUZZ_SRC) -lpthread

native-test: native/build/test/nread_stress_tsan native/build/test/nread_stress_asan native/build/test/bilog_test_tsan native/build/test/bilog_test_asan native/build/test/dirlist_fuzz_tsan native/build/test/dirlist_fuzz_asan
	TSAN_OPTIONS=halt_on_error=1 native/build/test/nread_stress_tsan $(NATIVE_TEST_SECONDS)
	ASAN_OPTIONS=detect_leaks=1 native/build/test/nread_stress_asan $(NATIVE_TEST_SECONDS)
	TSAN_OPTIONS=halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 bash native/test/bilog_test.sh native/build/test/bilog_test_asan native/build/test/bilog_test_tsan
	ASAN_OPTIONS=detect_leaks=1 native/build/test/dirlist_fuzz_asan $(NATIVE_TEST_SECONDS)
	TSAN_OPTIONS=halt_on_error=1 native/build/test/dirlist_fuzz_tsan $(NATIVE_TEST_SECONDS)

test: build native-test
	./node_modules/.bin/vitest run
	@[ -n "$$S3_ENDPOINT" ] || echo "make test: the S3 tests (test/s3-store.test.ts, test/s3-cli.test.ts, test/s3-encrypt.test.ts, the S3 half of test/multihost.test.ts) were SKIPPED: S3_ENDPOINT is not set; make test-s3 runs them against a local Ceph RGW"

# The S3 store against a real Ceph RGW on this machine (issue 18): installs ceph-mon, ceph-osd,
# radosgw and ceph-common if missing (apt-get: root), starts a one-node cluster under
# /var/tmp (~8 s, ~0.7 GB of RAM), runs the S3 tests (.ci/test-s3.sh: store, CLI, encrypted CLI,
# read cache, multihost), and always removes the cluster.
test-s3: build
	bash .ci/test-s3.sh

# The suite while stress-ng keeps every core busy: tests must not need an idle machine.
test-load: build
	bash scripts/test-load.sh

demo: build
	bash scripts/demo.sh

# The main job on a repository in an S3 bucket (issue 18): a throw-away local Ceph RGW unless
# S3_ENDPOINT is set (then S3_ACCESS_KEY/S3_SECRET_KEY or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).
demo-s3: build
	bash scripts/demo-s3.sh

bench: build
	bash bench/run.sh full

bench-quick: build
	bash bench/run.sh quick

# Only the online step (issue 14: backups of a live tree / image file with before-image
# capture, against the same backups offline); BENCH_MODE=quick for the small sources.
bench-online: build
	BENCH_STEPS=online bash bench/run.sh $(or $(BENCH_MODE),full)

# Only the many-small-files step (issue 15: 1,000 × 1,000 files of 0–200 bytes;
# BENCH_MODE=quick: 100 × 1,000).
bench-many: build
	BENCH_STEPS=many bash bench/run.sh $(or $(BENCH_MODE),full)

# Only the admin step (issue 17: bfs diff / find against restic over 20 generations of the
# Linux tree, and the growth of a backup after 1 % renames and copies; BENCH_MODE=quick:
# the quick tree). Its own work directory, so its copy of the tree is extracted once there.
bench-admin: build
	BENCH_DIR=$(or $(BENCH_DIR),/var/tmp/bfs-bench-admin) BENCH_STEPS=admin bash bench/run.sh $(or $(BENCH_MODE),full)

# The tape tier's scenarios on the virtual tape library, clock scale 0 (simulated hours).
bench-tape: build
	node bench/tape-sim.mjs

# Issue 16's crash target: kill -9 at 100 random points over forget, prune, merge, compact and
# backup on a real format 2 repository, every generation checked after each (bench/crash.mjs).
bench-crash: build
	node bench/crash.mjs --points $${CRASH_POINTS:-100}

# Issue 16's compaction target: `bfs compact` of the bench image while a reader preads 4 KiB
# through a mount every 5 ms, with the same reader alone before and after (bench/compact-mount.sh;
# the image comes from `make bench`'s corpus in BENCH_DIR).
bench-compact: build
	bash bench/compact-mount.sh

# Issue 16's size and read targets after compaction, inside the bench (its compact step): full
# backups by bfs and tar|zstd -3, `bfs compact` of a copy of bfs's repository (stored size
# against tar's), and generation 1 read through mounts of the uncompacted and the compacted
# repository, alternating. BENCH_MODE=quick for the small corpora; BENCH_DIR as for `make bench`.
bench-compact-size: build
	BENCH_STEPS=compact BENCH_TOOLS=bfs,tar bash bench/run.sh $(or $(BENCH_MODE),full)

# Issue 16's restore-after-merge target: restore of gen20 of 20 incrementals, before and after
# `bfs merge`, against one full generation of the same tree (bench/merge-restore.sh).
bench-merge: build
	bash bench/merge-restore.sh

# The man page and the completion scripts, generated from the command definitions
# (bfs generate), so they are never written twice.
GEN_DOCS := dist/share/bfs.1 dist/share/bfs.bash dist/share/_bfs
docs: build
	@mkdir -p dist/share
	./bin/bfs generate man > dist/share/bfs.1
	./bin/bfs generate bash > dist/share/bfs.bash
	./bin/bfs generate zsh > dist/share/_bfs

# make install [PREFIX=/usr/local] [DESTDIR=/tmp/stage]: bfs itself (dist/, the native addons,
# the runtime npm packages) under $(LIBDIR), the command in $(BINDIR) (a relative symlink,
# so a DESTDIR stage can be moved), the man page, bash and zsh completions, the systemd
# units and examples (job settings, a cron line). Nothing is enabled or configured.
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib/bfs
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
DOCDIR ?= $(PREFIX)/share/doc/bfs
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
SUBST = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g'
install: docs
	@set -e; d='$(DESTDIR)'; \
	mods=$$(npm ls --omit=dev --parseable --all 2>/dev/null | sed -n 's|^$(CURDIR)/||p' | grep '^node_modules/'); \
	[ -n "$$mods" ] || { echo 'bfs: npm ls found no runtime packages (make deps)' >&2; exit 1; }; \
	rm -rf "$$d$(LIBDIR)"; \
	install -d "$$d$(LIBDIR)/bin" "$$d$(LIBDIR)/native/build/Release" "$$d$(BINDIR)" "$$d$(MANDIR)/man1" "$$d$(UNITDIR)" \
	  "$$d$(DOCDIR)/examples" "$$d$(BASHCOMPDIR)" "$$d$(ZSHCOMPDIR)"; \
	install -m 755 bin/bfs "$$d$(LIBDIR)/bin/bfs"; \
	install -m 644 package.json "$$d$(LIBDIR)/package.json"; \
	cp -a dist "$$d$(LIBDIR)/dist"; \
	install -m 755 native/build/Release/bfs_native.node native/build/Release/fuse.node native/build/Release/bfs-bilog-wd "$$d$(LIBDIR)/native/build/Release/"; \
	for m in $$mods; do cp -a --parents "$$m" "$$d$(LIBDIR)/"; done; \
	ln -sfn "$$(realpath -m --relative-to='$(BINDIR)' '$(LIBDIR)/bin/bfs')" "$$d$(BINDIR)/bfs"; \
	install -m 644 dist/share/bfs.1 "$$d$(MANDIR)/man1/bfs.1"; \
	install -m 644 dist/share/bfs.bash "$$d$(BASHCOMPDIR)/bfs"; \
	install -m 644 dist/share/_bfs "$$d$(ZSHCOMPDIR)/_bfs"; \
	for u in bfs-backup@.service bfs-backup@.timer bfs-forget@.service bfs-forget@.timer; do \
	  $(SUBST) contrib/systemd/$$u.in > "$$d$(UNITDIR)/$$u"; chmod 644 "$$d$(UNITDIR)/$$u"; done; \
	for f in backup-job.env forget-job.env; do $(SUBST) contrib/systemd/$$f > "$$d$(DOCDIR)/examples/$$f"; done; \
	$(SUBST) contrib/cron/bfs.cron.in > "$$d$(DOCDIR)/examples/bfs.cron"; \
	echo "installed bfs in $$d$(PREFIX) (units in $$d$(UNITDIR); job settings go in $(SYSCONFDIR)/bfs/JOB.env)"

uninstall:
	rm -rf '$(DESTDIR)$(LIBDIR)' '$(DESTDIR)$(DOCDIR)'
	rm -f '$(DESTDIR)$(BINDIR)/bfs' '$(DESTDIR)$(MANDIR)/man1/bfs.1' '$(DESTDIR)$(BASHCOMPDIR)/bfs' '$(DESTDIR)$(ZSHCOMPDIR)/_bfs'
	rm -f $(foreach u,bfs-backup@.service bfs-backup@.timer bfs-forget@.service bfs-forget@.timer,'$(DESTDIR)$(UNITDIR)/$(u)')

clean:
	rm -rf dist native/build
