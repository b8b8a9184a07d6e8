/* bench/bilog-cap.c: a capturing process for bench/bilog-latency.sh that links the engine
 * (native/bilog.c) directly, without Node, so that two versions of the engine can be compared
 * with the same harness and the phase profile (-DBILOG_PROF) can be printed.
 * usage: bilog-cap WATCH_PATH CAPTURE_FILE
 * Prints "t0 fifo=F" once T0 is set, waits for a line (or EOF) on stdin, stops and prints
 * the counters; with -DBILOG_PROF the engine prints its phase histogram to stderr at the stop. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <string.h>

#include "../native/bilog.h"

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  bilog_t *b;
  const char *sc = "?";
  int err = bilog_start(argv[1], argv[2], NULL, &b, &sc);
  if (err) {
    fprintf(stderr, "bilog-cap: %s: %s\n", sc, strerror(err));
    return 1;
  }
  bilog_info_t in;
  bilog_info(b, &in);
  printf("t0 fifo=%d\n", in.fifo);
  fflush(stdout);
  char line[64];
  if (!fgets(line, sizeof line, stdin)) { /* EOF: stop too */
  }
  err = bilog_stop(b);
  bilog_stats_t st;
  bilog_stats(b, &st);
  printf("events=%llu skipped=%llu images=%llu image_bytes=%llu log_bytes=%llu records=%llu void=%llu log_errno=%d "
         "follow_events=%llu remote=%llu hops=%llu reorders=%llu allwake=%llu prereads=%llu preread_bytes=%llu\n",
         (unsigned long long)st.events, (unsigned long long)st.skipped, (unsigned long long)st.images,
         (unsigned long long)st.image_bytes, (unsigned long long)st.log_bytes, (unsigned long long)st.records,
         (unsigned long long)st.void_reason, err, (unsigned long long)st.follow_events,
         (unsigned long long)st.follow_remote, (unsigned long long)st.follow_hops,
         (unsigned long long)st.follow_reorders, (unsigned long long)st.follow_allwake,
         (unsigned long long)st.prereads, (unsigned long long)st.preread_bytes);
  bilog_free(b);
  return err ? 1 : 0;
}
