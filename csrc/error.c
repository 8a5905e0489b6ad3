/* error.c - the structured error objects every binding returns. */
#include <stdarg.h>
#include <stdio.h>
#include "ksms.h"

int err_push(lua_State *L, const char *category, const char *code,
             const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
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

/* tostring(err) -> "ksms[provider] category (code): message" */
static int err_tostring(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_getfield(L, 1, "provider");
  luaL_addstring(&b, "ksms[");
  luaL_addstring(&b, lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
  lua_pop(L, 1);
  luaL_addstring(&b, "] ");
  lua_getfield(L, 1, "category");
  luaL_addstring(&b, lua_isstring(L, -1) ? lua_tostring(L, -1) : "unknown");
  lua_pop(L, 1);
  lua_getfield(L, 1, "code");
  if (lua_isstring(L, -1)) {
    luaL_addstring(&b, " (");
    luaL_addstring(&b, lua_tostring(L, -1));
    luaL_addstring(&b, ")");
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "message");
  if (lua_isstring(L, -1)) {
    luaL_addstring(&b, ": ");
    luaL_addstring(&b, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  luaL_pushresult(&b);
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
