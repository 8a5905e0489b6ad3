/*
 * zlib_loop - the floor of what a OneShot frame costs: deflate (level 9) and
 * inflate one payload in a loop with streams reused (deflateReset /
 * inflateReset), nothing else. Prints nanoseconds per operation.
 *
 *   zlib_loop FILE [ITERATIONS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* like Lua's os.clock */
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: zlib_loop FILE [ITERATIONS]\n");
    return 2;
  }
  long iters = argc > 2 ? atol(argv[2]) : 200000;
  FILE *f = fopen(argv[1], "rb");
  if (!f) { perror(argv[1]); return 1; }
  static unsigned char in[1 << 16], z[1 << 17], back[1 << 16];
  size_t n = fread(in, 1, sizeof in, f);
  fclose(f);

  z_stream d, i;
  memset(&d, 0, sizeof d);
  memset(&i, 0, sizeof i);
  if (deflateInit(&d, 9) != Z_OK || inflateInit(&i) != Z_OK) return 1;

  size_t zlen = 0;
  double t0 = now_ns();
  for (long k = 0; k < iters; k++) {
    deflateReset(&d);
    d.next_in = in; d.avail_in = (uInt)n;
    d.next_out = z; d.avail_out = sizeof z;
    if (deflate(&d, Z_FINISH) != Z_STREAM_END) return 1;
    zlen = sizeof z - d.avail_out;
  }
  double t1 = now_ns();
  for (long k = 0; k < iters; k++) {
    inflateReset(&i);
    i.next_in = z; i.avail_in = (uInt)zlen;
    i.next_out = back; i.avail_out = sizeof back;
    if (inflate(&i, Z_FINISH) != Z_STREAM_END) return 1;
  }
  double t2 = now_ns();
  if (sizeof back - i.avail_out != n || memcmp(back, in, n) != 0) return 1;
  printf("bytes %zu compressed %zu\n", n, zlen);
  printf("deflate_ns %.1f\n", (t1 - t0) / iters);
  printf("inflate_ns %.1f\n", (t2 - t1) / iters);
  deflateEnd(&d);
  inflateEnd(&i);
  return 0;
}
