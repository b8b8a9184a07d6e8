{
  "targets": [
    {
      # The native read path, the stat cache and the hook table: node-gyp's Release default
      # -O3, as the fuse-native binding this code came from was built (bfs_native's POSIX
      # calls are -O2).
      "target_name": "fastpath",
      "type": "static_library",
      "sources": ["nread.c", "statcache.c", "hooks.c"],
      "defines": ["_GNU_SOURCE", "_FILE_OFFSET_BITS=64"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-fPIC"],
      "cflags_c": ["-std=gnu11"]
    },
    {
      "target_name": "bfs_native",
      "sources": ["bfs_native.c", "fastpath_napi.c"],
      "dependencies": ["fastpath"],
      "libraries": ["-lzstd", "-lpthread"],
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
