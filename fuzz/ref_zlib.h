/*
 * ref_zlib.h - the reference the inflate and frame harnesses compare
 * ksms.core against: zlib itself, in one call with all the input and
 * exactly max_out + 1 bytes of room (the extra byte tells "over the
 * limit" from "exactly the limit").
 */
#ifndef KSMS_FUZZ_REF_ZLIB_H
#define KSMS_FUZZ_REF_ZLIB_H

#include <zlib.h>
#include "harness.h"

/* Returns NULL (out, *out_n set; free it) or the error code ksms must give:
 * too_large, trailing_data, truncated or corrupt. */
static const char *fz_ref_inflate(const uint8_t *in, size_t n, size_t max_out,
                                  uint8_t **out, size_t *out_n) {
  /* One buffer for the whole run: a fresh 1 MiB per call costs more in
   * mmap and page faults than the rest of the harness. */
  static uint8_t *buf;
  static size_t cap;
  if (cap < max_out + 1) {
    free(buf);
    cap = max_out + 1;
    buf = malloc(cap);
    if (!buf) abort();
  }
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit(&z) != Z_OK) abort();
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)n;
  z.next_out = buf;
  z.avail_out = (uInt)(max_out + 1);
  int rc = inflate(&z, Z_NO_FLUSH);
  size_t produced = max_out + 1 - z.avail_out;
  uInt left = z.avail_in;
  inflateEnd(&z);
  const char *code = NULL;
  if (produced > max_out) code = "too_large";
  else if (rc == Z_STREAM_END) code = left ? "trailing_data" : NULL;
  else if (rc == Z_OK || rc == Z_BUF_ERROR) code = "truncated";
  else code = "corrupt";
  if (code) return code;
  *out = malloc(produced ? produced : 1);
  if (!*out) abort();
  if (produced) memcpy(*out, buf, produced);
  *out_n = produced;
  return NULL;
}

/* What zlib's compress2 gives, into a malloc'd buffer; one stream per
 * level is kept and reset (the same bytes as a fresh one, far cheaper). */
static uint8_t *fz_ref_deflate(const uint8_t *in, size_t n, int level, size_t *out_n) {
  static z_stream streams[11];
  static int ready[11];
  int k = level + 1;
  z_stream *z = &streams[k];
  if (!ready[k]) {
    if (deflateInit(z, level) != Z_OK) abort();
    ready[k] = 1;
  } else if (deflateReset(z) != Z_OK) abort();
  uLong cap = deflateBound(z, (uLong)n);
  uint8_t *buf = malloc(cap ? cap : 1);
  if (!buf) abort();
  z->next_in = (Bytef *)in;
  z->avail_in = (uInt)n;
  z->next_out = buf;
  z->avail_out = (uInt)cap;
  if (deflate(z, Z_FINISH) != Z_STREAM_END) abort();
  *out_n = cap - z->avail_out;
  return buf;
}

#endif
