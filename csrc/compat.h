/*
 * compat.h - the differences between the Lua 5.1 (and LuaJIT 2.1), 5.2,
 * 5.3 and 5.4 C APIs that the core relies on. Written for ksms; include it
 * instead of the Lua headers. The core is written against the 5.3/5.4 API;
 * what an older one lacks is filled in here.
 */
#ifndef KSMS_COMPAT_H
#define KSMS_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
/* lua_pcall's success code; 5.1 returns 0 without naming it. */
#ifndef LUA_OK
#define LUA_OK 0
#endif

#define lua_rawlen(L, i) lua_objlen((L), (i))
#define compat_absindex(L, i) \
  (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)
#define lua_absindex(L, i) compat_absindex((L), (i))

/* A userdata's one associated table: its environment in 5.1. */
#define lua_setuservalue(L, i) lua_setfenv((L), (i))
#define lua_getuservalue(L, i) lua_getfenv((L), (i))

/* LuaJIT 2.1's lauxlib.h already has luaL_setfuncs, luaL_setmetatable,
 * luaL_testudata and the luaL_newlib macro; plain Lua 5.1 has none of them.
 * luaL_newlib being a macro there tells the two headers apart. */
#if !defined(luaL_newlib)
/* Registers the functions of l into the table below the nup upvalues on
 * the stack, each closure sharing those upvalues; pops the upvalues. */
static inline void compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#define luaL_setfuncs(L, l, nup) compat_setfuncs((L), (l), (nup))

/* Sets the metatable registered under tname on the value at the top. */
static inline void compat_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}
#define luaL_setmetatable(L, t) compat_setmetatable((L), (t))

/* The userdata at i when its metatable is tname's, else NULL. */
static inline void *compat_testudata(lua_State *L, int i, const char *tname) {
  void *p = lua_touserdata(L, i);
  if (p == NULL || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}
#define luaL_testudata(L, i, t) compat_testudata((L), (i), (t))

#define luaL_newlibtable(L, l) lua_createtable((L), 0, sizeof(l) / sizeof((l)[0]) - 1)
#define luaL_newlib(L, l) (luaL_newlibtable((L), (l)), luaL_setfuncs((L), (l), 0))
#endif /* plain 5.1 */

#endif /* < 5.2 */

#if LUA_VERSION_NUM < 503
/* Before 5.3 there is no integer subtype: a number is "integral" when it
 * has no fractional part and fits a lua_Integer (checked before the cast,
 * which is undefined for a value out of range). The bounds are powers of
 * two, exact as lua_Numbers. */
#define COMPAT_INTEGER_LIMIT \
  ((lua_Number)((lua_Integer)1 << (sizeof(lua_Integer) * 8 - 2)) * 2)
static inline int compat_isinteger(lua_State *L, int i) {
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
  lua_Number n = lua_tonumber(L, i);
  return n >= -COMPAT_INTEGER_LIMIT && n < COMPAT_INTEGER_LIMIT &&
         n == (lua_Number)(lua_Integer)n;
}
#define lua_isinteger(L, i) compat_isinteger((L), (i))
#endif /* < 5.3 */

/* 5.4's lua_newuserdata is lua_newuserdatauv(L, size, 1); in 5.1-5.3 it is
 * the function itself, with its one environment / user value. Nothing more
 * is needed: the core uses lua_newuserdata and one user value only. */

#endif
