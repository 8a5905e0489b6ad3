/* error.c - the structured error objects every binding returns. */
#include <stdarg.h>
#include <stdio.h>
#include "ksms.h"

/* Ends the len bytes at s before a last UTF-8 character left incomplete by
 * a cut at a byte count (vsnprintf's). */
static void err_utf8_cut(char *s, size_t len) {
  size_t start = len; /* where the last character begins */
  while (start > 0 && len - start < 3 && ((unsigned char)s[start - 1] & 0xC0) == 0x80) start--;
  if (start > 0) {
    unsigned lead = (unsigned char)s[start - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (len - (start - 1) < need) len = start - 1;
  }
  s[len] = '\0';
}

/* The message is cut to 255 bytes (on a character boundary): the formats
 * are ours and short, the bound only matters for what they quote. */
int err_push(lua_State *L, const char *category, const char *code,
             const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Also trims a character a caller's own snprintf cut (http.c's errbuf). */
  err_utf8_cut(msg, len < 0 ? 0 : (size_t)len >= sizeof msg ? sizeof msg - 1 : (size_t)len);
  lua_pushnil(L);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, category);
  lua_setfield(L, -2, "category");
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  lua_pushliteral(L, "ksms");
  lua_setfield(L, -2, "provider");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "retryable");
  luaL_setmetatable(L, ERR_METATABLE);
  return 2;
}

/* Pushes t[field] when it is a string or a number, else
 * dflt when dflt is given; returns how many values it pushed. */
static int err_piece(lua_State *L, const char *field, const char *dflt) {
  lua_getfield(L, 1, field);
  if (lua_isstring(L, -1)) return 1; /* lua_concat converts a number */
  lua_pop(L, 1);
  if (!dflt) return 0;
  lua_pushstring(L, dflt);
  return 1;
}

/* tostring(err) -> "ksms[provider] category (code): message"
 * Every piece goes on the stack and one lua_concat joins them: a
 * luaL_Buffer would share the stack with the lua_getfield calls, which
 * corrupts the buffer once it outgrows its inline space. */
static int err_tostring(lua_State *L) {
  int n = 0;
  luaL_checkstack(L, 8, "ksms.error: stack overflow");
  lua_pushliteral(L, "ksms[");
  n++;
  n += err_piece(L, "provider", "?");
  lua_pushliteral(L, "] ");
  n++;
  n += err_piece(L, "category", "unknown");
  if (err_piece(L, "code", NULL)) {
    lua_pushliteral(L, " (");
    lua_insert(L, -2);
    lua_pushliteral(L, ")");
    n += 3;
  }
  if (err_piece(L, "message", NULL)) {
    lua_pushliteral(L, ": ");
    lua_insert(L, -2);
    n += 2;
  }
  lua_concat(L, n);
  return 1;
}

/* Creates the shared metatable and exposes it as core.error_mt. */
void err_open(lua_State *L) {
  luaL_newmetatable(L, ERR_METATABLE);
  lua_pushcfunction(L, err_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "ksms.error");
  lua_setfield(L, -2, "__name");
  lua_setfield(L, 1, "error_mt");
}
