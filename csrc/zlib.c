/*
 * zlib.c - RFC 1950 compress/decompress with streams reused between calls
 * (prefix zl_). Re-initialising a level-9 deflate stream costs far more than
 * compressing a short message, so each Lua state keeps one deflater and one
 * inflater and resets them; the output is byte for byte what a fresh stream
 * (zlib.compress(s, 9)) gives.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "ksms.h"

#define ZL_DEFAULT_LEVEL 9
#define ZL_DEFAULT_MAX_OUT ((size_t)1 << 20)
/* zlib's avail_in/avail_out are 32-bit. */
#define ZL_MAX_CHUNK ((size_t)UINT32_MAX)

struct zl_codec {
  z_stream def;
  int def_level;  /* level the deflater was set up with, -2 = none yet */
  z_stream inf;
  int inf_ready;
};

zl_codec *zl_codec_new(void) {
  zl_codec *z = calloc(1, sizeof *z);
  if (z) z->def_level = -2;
  return z;
}

void zl_codec_free(zl_codec *z) {
  if (!z) return;
  if (z->def_level != -2) deflateEnd(&z->def);
  if (z->inf_ready) inflateEnd(&z->inf);
  free(z);
}

/* Gets the deflater ready for a new stream at `level`. */
static int zl_deflater_ready(zl_codec *z, int level) {
  if (z->def_level == level) return deflateReset(&z->def) == Z_OK;
  if (z->def_level != -2) {
    deflateEnd(&z->def);
    z->def_level = -2;
  }
  memset(&z->def, 0, sizeof z->def);
  if (deflateInit(&z->def, level) != Z_OK) return 0;
  z->def_level = level;
  return 1;
}

const char *zl_deflate(lua_State *L, zl_codec *z, buf_t *out,
                       const unsigned char *in, size_t n, int level,
                       const char **msg) {
  if (n > ZL_MAX_CHUNK) {
    *msg = "input too large to compress in one call";
    return "too_large";
  }
  if (!zl_deflater_ready(z, level)) {
    *msg = "cannot initialise deflate";
    return "zlib_init";
  }
  uLong bound = deflateBound(&z->def, (uLong)n);
  unsigned char *dst = buf_reserve(L, out, bound);
  z->def.next_in = (Bytef *)in;
  z->def.avail_in = (uInt)n;
  z->def.next_out = dst;
  z->def.avail_out = (uInt)bound;
  int rc = deflate(&z->def, Z_FINISH);
  if (rc != Z_STREAM_END) {
    *msg = "deflate did not finish";
    return "zlib_error";
  }
  out->len += bound - z->def.avail_out;
  return NULL;
}

const char *zl_inflate(lua_State *L, zl_codec *z, buf_t *out,
                       const unsigned char *in, size_t n, size_t max_out,
                       const char **msg) {
  if (n > ZL_MAX_CHUNK) {
    *msg = "input too large";
    return "too_large";
  }
  if (!z->inf_ready) {
    memset(&z->inf, 0, sizeof z->inf);
    if (inflateInit(&z->inf) != Z_OK) {
      *msg = "cannot initialise inflate";
      return "zlib_init";
    }
    z->inf_ready = 1;
  } else if (inflateReset(&z->inf) != Z_OK) {
    *msg = "cannot reset inflate";
    return "zlib_init";
  }
  size_t start = out->len;
  z->inf.next_in = (Bytef *)in;
  z->inf.avail_in = (uInt)n;
  /* Short messages usually expand 2-4x; grow geometrically from there,
   * never beyond max_out + 1 (the extra byte detects "too large"). */
  size_t guess = n * 4 + 64;
  for (;;) {
    size_t produced = out->len - start;
    size_t room = guess > produced ? guess - produced : produced;
    if (produced + room > max_out + 1) room = max_out + 1 - produced;
    if (room > ZL_MAX_CHUNK) room = ZL_MAX_CHUNK;
    unsigned char *dst = buf_reserve(L, out, room);
    z->inf.next_out = dst;
    z->inf.avail_out = (uInt)room;
    int rc = inflate(&z->inf, Z_NO_FLUSH);
    out->len += room - z->inf.avail_out;
    if (out->len - start > max_out) {
      *msg = "decompressed data exceeds the limit";
      return "too_large";
    }
    if (rc == Z_STREAM_END) {
      if (z->inf.avail_in != 0) {
        *msg = "bytes after the end of the zlib stream";
        return "trailing_data";
      }
      return NULL;
    }
    if (rc == Z_BUF_ERROR && z->inf.avail_in == 0) {
      *msg = "zlib stream is truncated";
      return "truncated";
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      *msg = z->inf.msg ? z->inf.msg : "corrupt zlib data";
      return "corrupt";
    }
    if (z->inf.avail_in == 0 && z->inf.avail_out != 0) {
      *msg = "zlib stream is truncated";
      return "truncated";
    }
    guess *= 2;
  }
}

/* core.deflate(s [, level]) -> zlib bytes; level 0..9 (default 9) or -1 */
static int zl_lua_deflate(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int level = (int)luaL_optinteger(L, 2, ZL_DEFAULT_LEVEL);
  luaL_argcheck(L, level >= -1 && level <= 9, 2, "level must be -1..9");
  core_state *st = CORE_STATE(L);
  buf_t *out = buf_scratch(&st->out);
  const char *msg = NULL;
  const char *code = zl_deflate(L, st->zlib, out, (const unsigned char *)s,
                                n, level, &msg);
  if (code) {
    buf_drop(out);
    return err_push(L, "invalid_input", code, "%s", msg);
  }
  buf_push(L, out, 0, out->len, 0);
  return 1;
}

/* core.inflate(s [, max_out]) -> bytes | nil, err
 * max_out caps the decompressed size (default 1 MiB): a compression bomb
 * returns an error instead of exhausting memory. */
static int zl_lua_inflate(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_Integer max_out = luaL_optinteger(L, 2, (lua_Integer)ZL_DEFAULT_MAX_OUT);
  luaL_argcheck(L, max_out >= 0, 2, "max_out must be >= 0");
  core_state *st = CORE_STATE(L);
  buf_t *out = buf_scratch(&st->out);
  const char *msg = NULL;
  const char *code = zl_inflate(L, st->zlib, out, (const unsigned char *)s,
                                n, (size_t)max_out, &msg);
  if (code) {
    buf_drop(out);
    return err_push(L, "protocol", code, "inflate: %s", msg);
  }
  buf_push(L, out, 0, out->len, 0);
  return 1;
}

void zl_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"deflate", zl_lua_deflate},
      {"inflate", zl_lua_inflate},
      {NULL, NULL},
  };
  core_register(L, fns);
}
