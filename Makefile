# bfs — everything a fresh Debian machine needs is installed by these targets.
SHELL := /bin/bash
# librust-blake3-dev: BLAKE3's official C sources, compiled into the addon (native/blake3-dir.sh);
# b3sum: the Rust BLAKE3 tool, the tests' independent oracle for it.
APT_PKGS := fuse libfuse2 libfuse-dev libzstd-dev pkg-config build-essential python3 attr rsync e2fsprogs util-linux procps zstd librust-blake3-dev b3sum
PREFIX ?= /usr/local
# Node's own headers (Debian's nodejs ships them in /usr/include/node): node-gyp must not
# try to download them, since this machine reaches only the npm and Debian registries.
NODEDIR ?= $(shell d=$$(dirname $$(dirname $$(readlink -f $$(command -v node)))); [ -f $$d/include/node/node_api.h ] && echo $$d)
export npm_config_nodedir := $(NODEDIR)

.PHONY: all deps build native test test-load demo bench bench-quick bench-tape install clean

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

native/build/Release/bfs_native.node: native/bfs_native.c native/binding.gyp native/blake3-dir.sh node_modules/.bfs-deps node_modules/.bfs-apt
	@sh native/blake3-dir.sh >/dev/null
	cd native && ../node_modules/.bin/node-gyp rebuild $(if $(NODEDIR),--nodedir=$(NODEDIR)) >/dev/null

native: native/build/Release/bfs_native.node

build: deps native
	./node_modules/.bin/tsc -p tsconfig.json

test: build
	./node_modules/.bin/vitest run

# The suite while stress-ng keeps every core busy: tests must not need an idle machine.
test-load: build
	bash scripts/test-load.sh

demo: build
	bash scripts/demo.sh

bench: build
	bash bench/run.sh full

bench-quick: build
	bash bench/run.sh quick

# The tape tier's scenarios on the virtual tape library, clock scale 0 (simulated hours).
bench-tape: build
	node bench/tape-sim.mjs

install: build
	ln -sf $(CURDIR)/bin/bfs $(PREFIX)/bin/bfs

clean:
	rm -rf dist native/build
