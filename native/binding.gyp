{
  "variables": {
    # BLAKE3's official C implementation from Debian's librust-blake3-dev, through the symlink
    # blake3-src that blake3-dir.sh points at the newest installed version (it fails with one
    # line when the package is missing). The command runs when gyp reads this file.
    "blake3_found": "<!(sh ./blake3-dir.sh)",
    "blake3_dir": "blake3-src"
  },
  "targets": [
    {
      # Upstream sources, compiled as they are (their own warnings are not ours to fix).
      "target_name": "blake3",
      "type": "static_library",
      "sources": [
        "<(blake3_dir)/blake3.c",
        "<(blake3_dir)/blake3_dispatch.c",
        "<(blake3_dir)/blake3_portable.c"
      ],
      "cflags": ["-fPIC"],
      "cflags_c": ["-std=gnu11"],
      "direct_dependent_settings": {
        "include_dirs": ["<(blake3_dir)"]
      },
      "conditions": [
        # x86-64 Linux: the SIMD kernels as upstream's unix assembly, chosen at run time by
        # blake3_dispatch.c (SSE2, SSE4.1, AVX2, AVX-512).
        ["target_arch=='x64' and OS=='linux'", {
          "sources": [
            "<(blake3_dir)/blake3_sse2_x86-64_unix.S",
            "<(blake3_dir)/blake3_sse41_x86-64_unix.S",
            "<(blake3_dir)/blake3_avx2_x86-64_unix.S",
            "<(blake3_dir)/blake3_avx512_x86-64_unix.S"
          ]
        }, {
          # anything else: the portable C code only
          "defines": ["BLAKE3_NO_SSE2", "BLAKE3_NO_SSE41", "BLAKE3_NO_AVX2", "BLAKE3_NO_AVX512", "BLAKE3_USE_NEON=0"]
        }]
      ],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"],
          "cflags": ["-O3"]
        }
      }
    },
    {
      # The native read path, the stat cache and the hook table: node-gyp's Release default
      # -O3, as the fuse-native binding this code came from was built (bfs_native's POSIX
      # calls are -O2).
      "target_name": "fastpath",
      "type": "static_library",
      "sources": ["nread.c", "statcache.c", "hooks.c", "dirlist.c", "dirsrc.c", "findwalk.c"],
      "dependencies": ["blake3"],
      "defines": ["_GNU_SOURCE", "_FILE_OFFSET_BITS=64"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-fPIC"],
      "cflags_c": ["-std=gnu11"]
    },
    {
      "target_name": "bfs_native",
      # aead.c calls libcrypto's EVP functions: not linked here, they resolve at load time
      # against the ones the node binary exports (its own OpenSSL, whose headers ship with
      # Node's in include/node/openssl), so the addon never mixes two OpenSSLs.
      "sources": ["bfs_native.c", "fastpath_napi.c", "bilog.c", "bilog_napi.c", "aead.c", "scrypt.c"],
      "dependencies": ["fastpath", "blake3"],
      # libsodium (Debian's libsodium-dev): scrypt.c, the key files' KEK
      "libraries": ["-lzstd", "-lpthread", "-lsodium"],
      "defines": [
        "_GNU_SOURCE",
        "_FILE_OFFSET_BITS=64",
        "NAPI_VERSION=8"
      ],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_c": ["-std=gnu11"],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"],
          "cflags": ["-O2"]
        }
      }
    },
    {
      # The BI capture's watchdog process (bilog_wd.c), which bilog.c starts with posix_spawn
      # and finds next to bfs_native.node.
      "target_name": "bfs-bilog-wd",
      "type": "executable",
      "sources": ["bilog_wd.c"],
      "defines": ["_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_c": ["-std=gnu11"],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"],
          "cflags": ["-O2"]
        }
      }
    },
    {
      # fuse-native's binding, patched (patches/fuse-native+2.2.6.patch), built here against
      # the system libfuse 2.9 (Debian libfuse-dev); the Makefile copies it to
      # node_modules/fuse-native/build/Release/, where fuse-native's index.js loads it from.
      # Its own binding.gyp flags: -g -O3 -Wall.
      "target_name": "fuse",
      "sources": ["../node_modules/fuse-native/fuse-native.c"],
      "include_dirs": [
        "<!(node -p \"require('path').dirname(require.resolve('napi-macros/package.json', { paths: [require('path').resolve('../node_modules/fuse-native')] }))\")"
      ],
      "cflags": ["-g", "-O3", "-Wall", "<!@(pkg-config --cflags fuse)"],
      "libraries": ["<!@(pkg-config --libs fuse)"]
    }
  ]
}
