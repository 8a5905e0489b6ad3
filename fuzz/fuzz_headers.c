/*
 * fuzz_headers - the libcurl transport's response header table
 * (res.headers, built by csrc/http.c from res.raw_headers on first read)
 * on any header block, against the nginx transport's parser
 * (ksms.transport.http1.parse_headers) on the same lines.
 *
 * Both transports promise the same res.headers (lowercased names, repeats
 * joined with ", ", obs-folded lines unfolded), so for any block the two
 * tables must be equal. Also: names hold no upper-case letter and no ':',
 * values are strings, nothing raises.
 */
#include "harness.h"

static int fz_http1_ref = LUA_NOREF;

static void fz_setup(lua_State *L) {
  if (fz_http1_ref != LUA_NOREF) return;
  luaL_dostring(L, "package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path");
  lua_getglobal(L, "require");
  lua_pushliteral(L, "ksms.transport.http1");
  fz_call(L, 1, 1, "require 'ksms.transport.http1' (run from the repository root)");
  lua_getfield(L, -1, "parse_headers");
  fz_http1_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
}

static void fz_one(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  fz_setup(L);
  /* the response object as the transport makes it */
  lua_createtable(L, 0, 3);
  int res = lua_gettop(L);
  lua_pushinteger(L, 200);
  lua_setfield(L, res, "status");
  lua_pushlstring(L, (const char *)data, size);
  lua_setfield(L, res, "raw_headers");
  lua_pushliteral(L, "");
  lua_setfield(L, res, "body");
  luaL_getmetatable(L, "ksms.core.http_response");
  FZ_CHECK(lua_istable(L, -1), "no ksms.core.http_response metatable");
  lua_setmetatable(L, res);
  lua_getfield(L, res, "headers");   /* the __index that builds it */
  int c_headers = lua_gettop(L);
  FZ_CHECK(lua_istable(L, c_headers), "res.headers is not a table");

  /* the same block as lines, as the nginx transport's reader splits them */
  lua_rawgeti(L, LUA_REGISTRYINDEX, fz_http1_ref);
  lua_newtable(L);
  size_t nlines = 0, pos = 0;
  while (pos < size) {
    const uint8_t *nl = memchr(data + pos, '\n', size - pos);
    size_t end = nl ? (size_t)(nl - data) : size;
    size_t len = end - pos;
    if (len && data[pos + len - 1] == '\r') len--;
    lua_pushlstring(L, (const char *)data + pos, len);
    lua_rawseti(L, -2, (lua_Integer)++nlines);
    pos = end + 1;
  }
  fz_call(L, 1, 1, "http1.parse_headers");
  int lua_headers = lua_gettop(L);

  lua_pushnil(L);
  while (lua_next(L, c_headers)) {
    size_t kn, vn;
    const char *k = lua_tolstring(L, -2, &kn);
    FZ_CHECK(lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING,
             "res.headers has a non-string name or value");
    for (size_t i = 0; i < kn; i++)
      FZ_CHECK(!(k[i] >= 'A' && k[i] <= 'Z') && k[i] != ':', "header name '%.40s' not lowercased", k);
    const char *v = lua_tolstring(L, -1, &vn);
    lua_pushvalue(L, -2);
    lua_rawget(L, lua_headers);
    size_t ln;
    const char *lv = lua_tolstring(L, -1, &ln);
    FZ_CHECK(lv, "header '%.40s': libcurl transport has it, nginx transport does not", k);
    FZ_CHECK(ln == vn && memcmp(lv, v, vn) == 0,
             "header '%.40s': the two transports give different values", k);
    lua_pop(L, 2);
  }
  lua_pushnil(L);
  while (lua_next(L, lua_headers)) {
    lua_pushvalue(L, -2);
    lua_rawget(L, c_headers);
    FZ_CHECK(!lua_isnil(L, -1), "header '%.40s': nginx transport has it, libcurl transport does not",
             lua_tostring(L, -3));
    lua_pop(L, 2);
  }
  fz_done(L);
}
