/*
 * text.c - message length and charset checks for Korean SMS providers,
 * which bill and validate in CP949 or EUC-KR bytes while Lua strings are
 * UTF-8. Both bindings make one pass over the string and allocate nothing
 * unless they have something to report.
 */
#include <stdint.h>
#include <string.h>
#include "ksms.h"
#include "text_tables.h"

/* Length of the run of ASCII bytes at the start of s, eight at a time
 * since most messages are mostly ASCII. */
static size_t text_ascii_run(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (n - i >= 8) {
    uint64_t word;
    memcpy(&word, s + i, sizeof word);
    if (word & UINT64_C(0x8080808080808080)) break;
    i += 8;
  }
  while (i < n && s[i] < 0x80) i++;
  return i;
}

/* Returns nil plus the bad_utf8 error for the sequence at 0-based offset. */
static int text_bad_utf8(lua_State *L, size_t offset) {
  return err_push(L, "invalid_input", "bad_utf8", "invalid UTF-8 at byte %zu",
                  offset + 1);
}

/* core.cp949_len(s) -> integer | nil, err
 * The length of UTF-8 string s in bytes as Korean providers count them
 * (the CP949/EUC-KR size): 1 per ASCII character (U+0000..U+007F), 2 per
 * any other character. Characters CP949 cannot encode (emoji, most of the
 * world's scripts) are counted as 2 too, which makes the result an upper
 * bound for text a provider would refuse anyway; charset_check is what
 * refuses them. Invalid UTF-8 gives nil plus an error object with
 * category "invalid_input", code "bad_utf8" and the 1-based byte offset of
 * the ill-formed sequence in its message. */
static int text_cp949_len(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  size_t i = 0, ascii_bytes = 0, wide_chars = 0;
  while (i < n) {
    size_t run = text_ascii_run(s + i, n - i);
    ascii_bytes += run;
    i += run;
    if (i == n) break;
    uint32_t cp;
    size_t len = text_utf8_decode(s + i, n - i, &cp);
    if (len == 0) return text_bad_utf8(L, i);
    wide_chars++;
    i += len;
  }
  lua_pushinteger(L, (lua_Integer)(ascii_bytes + 2 * wide_chars));
  return 1;
}

/* How many unrepresentable characters charset_check lists at most. */
#define TEXT_MAX_REPORTED 100

static int text_in_charset(const uint8_t *page_index, uint32_t cp) {
  if (cp > 0xFFFF) return 0; /* neither charset has anything above the BMP */
  const uint8_t *page = text_pages[page_index[cp >> 8]];
  return (page[(cp >> 3) & 31] >> (cp & 7)) & 1;
}

/* core.charset_check(s, charset) -> true | nil, list | nil, err
 * charset is "cp949" or "euc-kr" (strict KS X 1001; it lacks e.g. 됬
 * U+B42C, which CP949 has); any other name raises an argument error.
 * Returns true when every character of UTF-8 string s is in the charset.
 * Otherwise returns nil and an array of { char = <the character as
 * UTF-8>, pos = <1-based character (not byte) position> } in string order,
 * one per offending character; only the first 100 are listed, and then
 * list.truncated is true. Invalid UTF-8 anywhere in s instead returns nil
 * and an error object (category "invalid_input", code "bad_utf8", like
 * cp949_len); tell the two apart by the error's category field, which a
 * list never has. The tables come from glibc iconv (see text_tables.h). */
static int text_charset_check(lua_State *L) {
  static const char *const charset_names[] = {"cp949", "euc-kr", NULL};
  static const uint8_t *const charset_pages[] = {text_cp949_page,
                                                 text_euckr_page};
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  const char *name = luaL_checkstring(L, 2);
  int which = 0;
  while (charset_names[which] && strcmp(charset_names[which], name) != 0)
    which++;
  if (!charset_names[which])
    return luaL_argerror(
        L, 2,
        lua_pushfstring(L, "unknown charset '%s' (use \"cp949\" or \"euc-kr\")",
                        name));
  const uint8_t *page_index = charset_pages[which];

  int list = 0;        /* stack index of the report, made on the first miss */
  size_t missing = 0;  /* offending characters seen, listed or not */
  size_t i = 0, char_pos = 0;
  lua_settop(L, 2);
  while (i < n) {
    size_t run = text_ascii_run(s + i, n - i);
    char_pos += run; /* ASCII is in both charsets */
    i += run;
    if (i == n) break;
    uint32_t cp;
    size_t len = text_utf8_decode(s + i, n - i, &cp);
    if (len == 0) return text_bad_utf8(L, i);
    char_pos++;
    if (!text_in_charset(page_index, cp)) {
      missing++;
      if (missing <= TEXT_MAX_REPORTED) {
        if (!list) {
          lua_newtable(L);
          list = lua_gettop(L);
        }
        lua_createtable(L, 0, 2);
        lua_pushlstring(L, (const char *)s + i, len);
        lua_setfield(L, -2, "char");
        lua_pushinteger(L, (lua_Integer)char_pos);
        lua_setfield(L, -2, "pos");
        lua_rawseti(L, list, (int)missing);
      }
      /* Past the limit keep scanning: invalid UTF-8 later still wins. */
    }
    i += len;
  }
  if (!list) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (missing > TEXT_MAX_REPORTED) {
    lua_pushboolean(L, 1);
    lua_setfield(L, list, "truncated");
  }
  lua_pushnil(L);
  lua_insert(L, list);
  return 2;
}

void text_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"cp949_len", text_cp949_len},
      {"charset_check", text_charset_check},
      {NULL, NULL},
  };
  core_register(L, fns);
}
