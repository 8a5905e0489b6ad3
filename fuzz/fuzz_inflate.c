/*
 * fuzz_inflate - core.inflate against zlib's own inflate, and
 * core.deflate round trips.
 *
 * Input: two bytes choosing max_out (0xFFFF: the default, 1 MiB), then the
 * compressed bytes. Invariants: success exactly when zlib succeeds under
 * the same max_out, with the same bytes; otherwise nil plus a protocol error
 * with zlib's reason (too_large, trailing_data, truncated, corrupt);
 * inflate(deflate(x, level)) == x at every level, and deflate's output is
 * zlib's compress2 byte for byte (ksms reuses its streams).
 */
#include "ref_zlib.h"

static void fz_one(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  fz_in in = { data, size };
  unsigned limit = fz_u16(&in);
  size_t max_out = limit == 0xFFFF ? (size_t)1 << 20 : limit * 16;
  const uint8_t *z = in.p;
  size_t zn = in.n;

  uint8_t *ref = NULL;
  size_t ref_n = 0;
  const char *want = fz_ref_inflate(z, zn, max_out, &ref, &ref_n);

  fz_core_fn(L, "inflate");
  lua_pushlstring(L, (const char *)z, zn);
  if (limit == 0xFFFF) lua_pushnil(L);
  else lua_pushinteger(L, (lua_Integer)max_out);
  fz_call(L, 2, 2, "inflate");
  if (!want) {
    size_t n;
    const char *got = lua_tolstring(L, -2, &n);
    FZ_CHECK(got, "inflate failed where zlib succeeds (%zu bytes, max_out %zu)", ref_n, max_out);
    FZ_CHECK(lua_isnil(L, -1), "inflate returned bytes and an error");
    FZ_CHECK(n == ref_n && memcmp(got, ref, n) == 0, "inflate output differs from zlib's");
  } else {
    FZ_CHECK(lua_isnil(L, -2), "inflate succeeded where zlib says %s", want);
    const char *code = fz_check_error(L, -1, "protocol", "inflate");
    FZ_CHECK(strcmp(code, want) == 0, "inflate error %s, zlib says %s", code, want);
  }
  free(ref);
  lua_settop(L, 0);

  /* the other way: the input as plain data, at a level it picks */
  int level = size ? (int)(data[0] % 11) - 1 : 9;
  size_t cn;
  uint8_t *c = fz_ref_deflate(data, size, level, &cn);
  fz_core_fn(L, "inflate");
  fz_core_fn(L, "deflate");
  lua_pushlstring(L, (const char *)data, size);
  lua_pushinteger(L, level);
  fz_call(L, 2, 1, "deflate");
  size_t dn;
  const char *d = lua_tolstring(L, -1, &dn);
  FZ_CHECK(d && dn == cn && memcmp(d, c, cn) == 0, "deflate(x, %d) differs from compress2", level);
  free(c);
  lua_pushinteger(L, (lua_Integer)size);
  fz_call(L, 2, 2, "inflate");
  size_t n;
  const char *back = lua_tolstring(L, -2, &n);
  FZ_CHECK(back && n == size && memcmp(back, data, size) == 0, "inflate(deflate(x)) ~= x");
  fz_done(L);
  return;
}
