/*
 * fuzz_hex - core.unhex on any bytes, core.hex round trips.
 *
 * Invariants: unhex accepts exactly the even-length strings of hex digits
 * (either case); hex(unhex(s)) is s in lower case, hex(x, true) in upper
 * case; a refusal is nil plus an invalid_input/bad_hex error that names the
 * first bad position (odd length aside); unhex(hex(x)) == x.
 */
#include <ctype.h>
#include "harness.h"

static void fz_one(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  size_t bad = (size_t)-1;
  for (size_t i = 0; i < size && bad == (size_t)-1; i++)
    if (!isxdigit(data[i])) bad = i;
  int valid = size % 2 == 0 && bad == (size_t)-1;

  fz_core_fn(L, "unhex");
  lua_pushlstring(L, (const char *)data, size);
  fz_call(L, 1, 2, "unhex");
  if (valid) {
    size_t n;
    const char *dec = lua_tolstring(L, -2, &n);
    FZ_CHECK(dec && lua_isnil(L, -1), "unhex refused valid hex");
    FZ_CHECK(n == size / 2, "unhex gave %zu bytes for %zu digits", n, size);
    for (int upper = 0; upper <= 1; upper++) {
      fz_core_fn(L, "hex");
      lua_pushlstring(L, dec, n);
      lua_pushboolean(L, upper);
      fz_call(L, 2, 1, "hex");
      size_t m;
      const char *enc = lua_tolstring(L, -1, &m);
      FZ_CHECK(m == size, "hex length %zu, expected %zu", m, size);
      for (size_t i = 0; i < size; i++) {
        int want = upper ? toupper(data[i]) : tolower(data[i]);
        FZ_CHECK(enc[i] == want, "hex(unhex(s)) differs from s at byte %zu", i);
      }
      lua_pop(L, 1);
    }
  } else {
    FZ_CHECK(lua_isnil(L, -2), "unhex accepted invalid hex");
    const char *code = fz_check_error(L, -1, "invalid_input", "unhex");
    FZ_CHECK(strcmp(code, "bad_hex") == 0, "unhex error code %s", code);
    if (size % 2 == 0) {
      char where[40];
      snprintf(where, sizeof where, "at position %zu", bad + 1);
      lua_getfield(L, -1, "message");
      FZ_CHECK(strstr(lua_tostring(L, -1), where), "unhex error '%s' does not say '%s'",
               lua_tostring(L, -1), where);
    }
  }
  lua_settop(L, 0);

  fz_core_fn(L, "unhex");
  fz_core_fn(L, "hex");
  lua_pushlstring(L, (const char *)data, size);
  fz_call(L, 1, 1, "hex");
  fz_call(L, 1, 2, "unhex");
  size_t n;
  const char *back = lua_tolstring(L, -2, &n);
  FZ_CHECK(back && n == size && memcmp(back, data, size) == 0, "unhex(hex(x)) ~= x");
  fz_done(L);
  return;
}
