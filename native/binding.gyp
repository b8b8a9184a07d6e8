{
  "targets": [
    {
      # The native read path and the hook table: node-gyp's Release default -O3, as the
      # fuse-native binding this code came from was built (bfs_native's POSIX calls are -O2).
      "target_name": "fastpath",
      "type": "static_library",
      "sources": ["nread.c", "hooks.c"],
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
    }
  ]
}
