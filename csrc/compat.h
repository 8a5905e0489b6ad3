/*
 * compat.h - the few differences between the Lua 5.4 and Lua 5.1/LuaJIT 2.1
 * C APIs that the core relies on. Written for ksms; include it instead of
 * the Lua headers.
 */
#ifndef KSMS_COMPAT_H
#define KSMS_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
/* LuaJIT 2.1 already has luaL_setfuncs, luaL_newlib, luaL_testudata and
 * luaL_setmetatable; these are the remaining gaps. */
#define lua_rawlen(L, i) lua_objlen((L), (i))
#define compat_absindex(L, i) \
  (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)
#define lua_absindex(L, i) compat_absindex((L), (i))

/* 5.1 has no integer subtype: a number is "integral" when it has no
 * fractional part and fits a lua_Integer (checked before the cast, which
 * is undefined for a value out of range). */
static inline int compat_isinteger(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
  lua_Number n = lua_tonumber(L, i);
  return n >= -9223372036854775808.0 && n < 9223372036854775808.0 &&
         n == (lua_Number)(lua_Integer)n;
}
#define lua_isinteger(L, i) compat_isinteger((L), (i))

/* A userdata's one associated table: its environment in 5.1. */
#define lua_setuservalue(L, i) lua_setfenv((L), (i))
#define lua_getuservalue(L, i) lua_getfenv((L), (i))
#endif

#endif
