{
  "targets": [
    {
      "target_name": "bfs_native",
      "sources": ["bfs_native.c"],
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
