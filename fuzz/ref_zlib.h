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
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit(&z) != Z_OK) abort();
  uint8_t *buf = malloc(max_out + 1);
  if (!buf) abort();
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
  if (code) {
    free(buf);
    return code;
  }
  *out = buf;
  *out_n = produced;
  return NULL;
}

/* zlib's compress2 into a malloc'd buffer. */
static uint8_t *fz_ref_deflate(const uint8_t *in, size_t n, int level, size_t *out_n) {
  uLongf cap = compressBound((uLong)n);
  uint8_t *buf = malloc(cap ? cap : 1);
  if (!buf || compress2(buf, &cap, in, (uLong)n, level) != Z_OK) abort();
  *out_n = cap;
  return buf;
}

#endif
