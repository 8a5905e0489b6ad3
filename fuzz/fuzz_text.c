/*
 * fuzz_text - core.cp949_len and core.charset_check ("cp949", "euc-kr") on
 * any bytes.
 *
 * References: the UTF-8 validator of harness.h, and glibc's iconv asked
 * at start-up about every BMP code point (the rule tools/gen_text_tables.c
 * states: converts to two bytes and back to itself; ASCII is in). The
 * committed tables are thus checked against the live iconv too.
 * Invariants: invalid UTF-8 gives nil plus invalid_input/bad_utf8 naming the
 * first bad byte; otherwise cp949_len counts 1 per ASCII and 2 per other
 * character, and charset_check returns true, or nil and the list of the
 * characters the charset lacks ({ char, pos }, character positions, at most
 * 100, .truncated beyond).
 */
#include <iconv.h>
#include "harness.h"

static uint8_t fz_in_cs[2][0x10000 / 8];
static const char *const fz_cs_lua[2] = { "cp949", "euc-kr" };
static const char *const fz_cs_iconv[2] = { "CP949", "EUC-KR" };

static void fz_tables(void) {
  static int ready;
  if (ready) return;
  ready = 1;
  for (int c = 0; c < 2; c++) {
    iconv_t to = iconv_open(fz_cs_iconv[c], "UTF-32LE"), back = iconv_open("UTF-32LE", fz_cs_iconv[c]);
    if (to == (iconv_t)-1 || back == (iconv_t)-1) abort();
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      int in = cp < 0x80;
      if (!in) {
        uint8_t u[4] = { cp & 0xFF, (cp >> 8) & 0xFF, 0, 0 }, e[8], r[8];
        char *ip = (char *)u, *op = (char *)e;
        size_t il = 4, ol = sizeof e;
        iconv(to, NULL, NULL, NULL, NULL);
        if (iconv(to, &ip, &il, &op, &ol) != (size_t)-1 && sizeof e - ol == 2) {
          ip = (char *)e; il = 2; op = (char *)r; ol = sizeof r;
          iconv(back, NULL, NULL, NULL, NULL);
          in = iconv(back, &ip, &il, &op, &ol) != (size_t)-1 && sizeof r - ol == 4 &&
               memcmp(r, u, 4) == 0;
        }
      }
      if (in) fz_in_cs[c][cp >> 3] |= (uint8_t)(1u << (cp & 7));
    }
    iconv_close(to);
    iconv_close(back);
  }
}

static int fz_member(int c, uint32_t cp) {
  return cp < 0x10000 && (fz_in_cs[c][cp >> 3] >> (cp & 7) & 1);
}

static void fz_bad_utf8(lua_State *L, const char *what, size_t at) {
  FZ_CHECK(lua_isnil(L, -2), "%s accepted invalid UTF-8", what);
  const char *code = fz_check_error(L, -1, "invalid_input", what);
  FZ_CHECK(strcmp(code, "bad_utf8") == 0, "%s error code %s", what, code);
  char where[48];
  snprintf(where, sizeof where, "at byte %zu", at + 1);
  lua_getfield(L, -1, "message");
  FZ_CHECK(strstr(lua_tostring(L, -1), where), "%s: '%s' does not say '%s'", what,
           lua_tostring(L, -1), where);
  lua_pop(L, 1);
}

static void fz_one(const uint8_t *data, size_t size) {
  fz_tables();
  lua_State *L = fz_state();
  size_t bad = fz_utf8_invalid_at(data, size);

  fz_core_fn(L, "cp949_len");
  lua_pushlstring(L, (const char *)data, size);
  fz_call(L, 1, 2, "cp949_len");
  if (bad != (size_t)-1) {
    fz_bad_utf8(L, "cp949_len", bad);
  } else {
    size_t want = 0;
    for (size_t i = 0; i < size;) {
      uint32_t cp;
      size_t k = fz_utf8_seq(data + i, size - i, &cp);
      want += k == 1 ? 1 : 2;
      i += k;
    }
    FZ_CHECK(lua_isinteger(L, -2) && lua_isnil(L, -1), "cp949_len did not return an integer");
    FZ_CHECK((size_t)lua_tointeger(L, -2) == want, "cp949_len %lld, expected %zu",
             (long long)lua_tointeger(L, -2), want);
  }
  lua_settop(L, 0);

  for (int c = 0; c < 2; c++) {
    fz_core_fn(L, "charset_check");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushstring(L, fz_cs_lua[c]);
    fz_call(L, 2, 2, "charset_check");
    if (bad != (size_t)-1) {
      fz_bad_utf8(L, "charset_check", bad);
      lua_settop(L, 0);
      continue;
    }
    size_t missing = 0, pos = 0;
    int listed = lua_istable(L, -1);
    FZ_CHECK(listed || lua_toboolean(L, -2), "charset_check returned neither true nor a list");
    if (listed) {
      FZ_CHECK(!lua_getmetatable(L, -1), "charset_check's list has a metatable (an error?)");
      FZ_CHECK(lua_isnil(L, -2), "charset_check returned a value and a list");
    }
    for (size_t i = 0; i < size;) {
      uint32_t cp;
      size_t k = fz_utf8_seq(data + i, size - i, &cp);
      pos++;
      if (!fz_member(c, cp)) {
        missing++;
        FZ_CHECK(listed, "%s: U+%04X at %zu is missing but charset_check says true", fz_cs_lua[c],
                 cp, pos);
        if (missing <= 100) {
          lua_rawgeti(L, -1, (lua_Integer)missing);
          FZ_CHECK(lua_istable(L, -1), "%s: list entry %zu is not a table", fz_cs_lua[c], missing);
          lua_getfield(L, -1, "pos");
          FZ_CHECK((size_t)lua_tointeger(L, -1) == pos, "%s: entry %zu has pos %lld, expected %zu",
                   fz_cs_lua[c], missing, (long long)lua_tointeger(L, -1), pos);
          lua_getfield(L, -2, "char");
          size_t cl;
          const char *ch = lua_tolstring(L, -1, &cl);
          FZ_CHECK(ch && cl == k && memcmp(ch, data + i, k) == 0, "%s: entry %zu has the wrong char",
                   fz_cs_lua[c], missing);
          lua_pop(L, 3);
        }
      }
      i += k;
    }
    if (listed) {
      FZ_CHECK(missing > 0, "%s: charset_check lists characters the charset has", fz_cs_lua[c]);
      size_t n = lua_rawlen(L, -1);
      FZ_CHECK(n == (missing < 100 ? missing : 100), "%s: list has %zu entries for %zu missing",
               fz_cs_lua[c], n, missing);
      lua_getfield(L, -1, "truncated");
      FZ_CHECK(lua_toboolean(L, -1) == (missing > 100), "%s: truncated flag wrong", fz_cs_lua[c]);
    }
    lua_settop(L, 0);
  }
  fz_done(L);
  return;
}
