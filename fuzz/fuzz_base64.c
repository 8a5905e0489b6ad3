/*
 * fuzz_base64 - core.b64decode on any bytes, core.b64encode round trips.
 *
 * Invariants: b64decode accepts exactly the canonical RFC 4648 encodings
 * (an independent checker below decides which those are); what it accepts
 * re-encodes to the same text (never "ok and garbage"); what it refuses
 * comes back as nil plus an invalid_input/bad_base64 error;
 * b64decode(b64encode(x)) == x for every x.
 */
#include "harness.h"

static const char fz_b64_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int fz_b64_value(uint8_t c) {
  const char *p = c ? strchr(fz_b64_alpha, c) : NULL;
  return p ? (int)(p - fz_b64_alpha) : -1;
}

/* Whether s is a canonical padded encoding; the decoded length in *out_n. */
static int fz_b64_canonical(const uint8_t *s, size_t n, size_t *out_n) {
  if (n % 4) return 0;
  if (n == 0) { *out_n = 0; return 1; }
  size_t pad = 0;
  if (s[n - 1] == '=') pad++;
  if (pad && s[n - 2] == '=') pad++;
  for (size_t i = 0; i < n - pad; i++)
    if (fz_b64_value(s[i]) < 0) return 0;
  /* the bits the padding hides must be zero */
  if (pad == 1 && (fz_b64_value(s[n - 2]) & 0x03)) return 0;
  if (pad == 2 && (fz_b64_value(s[n - 3]) & 0x0F)) return 0;
  *out_n = n / 4 * 3 - pad;
  return 1;
}

static void fz_one(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  size_t want_n = 0;
  int canonical = fz_b64_canonical(data, size, &want_n);

  fz_core_fn(L, "b64decode");
  lua_pushlstring(L, (const char *)data, size);
  fz_call(L, 1, 2, "b64decode");
  if (lua_isstring(L, -2)) {
    FZ_CHECK(canonical, "b64decode accepted a non-canonical encoding");
    FZ_CHECK(lua_isnil(L, -1), "b64decode returned a value and an error");
    size_t n;
    const char *dec = lua_tolstring(L, -2, &n);
    FZ_CHECK(n == want_n, "b64decode gave %zu bytes, expected %zu", n, want_n);
    fz_core_fn(L, "b64encode");
    lua_pushlstring(L, dec, n);
    fz_call(L, 1, 1, "b64encode");
    size_t m;
    const char *enc = lua_tolstring(L, -1, &m);
    FZ_CHECK(m == size && memcmp(enc, data, size) == 0, "b64encode(b64decode(s)) ~= s");
  } else {
    FZ_CHECK(lua_isnil(L, -2), "b64decode returned a %s", luaL_typename(L, -2));
    FZ_CHECK(!canonical, "b64decode refused a canonical encoding");
    const char *code = fz_check_error(L, -1, "invalid_input", "b64decode");
    FZ_CHECK(strcmp(code, "bad_base64") == 0, "b64decode error code %s", code);
  }
  lua_settop(L, 0);

  /* and the other way: any bytes round-trip */
  fz_core_fn(L, "b64decode");
  fz_core_fn(L, "b64encode");
  lua_pushlstring(L, (const char *)data, size);
  fz_call(L, 1, 1, "b64encode");
  size_t elen;
  lua_tolstring(L, -1, &elen);
  FZ_CHECK(elen == (size + 2) / 3 * 4, "b64encode length %zu for %zu bytes", elen, size);
  fz_call(L, 1, 2, "b64decode");
  size_t n;
  const char *back = lua_tolstring(L, -2, &n);
  FZ_CHECK(back && n == size && memcmp(back, data, size) == 0, "b64decode(b64encode(x)) ~= x");
  fz_done(L);
  return;
}
