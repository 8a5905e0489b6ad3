/*
 * core.c - luaopen_ksms_core: builds the module table from the bindings of
 * every source file. One core_state per Lua state holds the scratch buffer
 * and the reused zlib and cipher contexts; it is freed by __gc.
 */
#include "ksms.h"

#define CORE_STATE_MT "ksms.core.state"

static int core_state_gc(lua_State *L) {
  core_state *s = luaL_checkudata(L, 1, CORE_STATE_MT);
  buf_free(&s->out);
  buf_free(&s->json);
  zl_codec_free(s->zlib);
  s->zlib = NULL;
  aes_ctx_free(s->aes);
  s->aes = NULL;
  return 0;
}

void core_register(lua_State *L, const luaL_Reg *fns) {
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  luaL_setfuncs(L, fns, 1);
  lua_pop(L, 1);
}

KSMS_EXPORT int luaopen_ksms_core(lua_State *L) {
  lua_settop(L, 0);
  lua_newtable(L);                                    /* 1: module */
  core_state *s = lua_newuserdata(L, sizeof *s);      /* 2: state */
  s->out = (buf_t){0};
  s->json = (buf_t){0};
  s->zlib = NULL;
  s->aes = NULL;
  luaL_newmetatable(L, CORE_STATE_MT);
  lua_pushcfunction(L, core_state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, 2);
  s->zlib = zl_codec_new();
  s->aes = aes_ctx_new();
  if (!s->zlib || !s->aes) return luaL_error(L, "ksms.core: out of memory");

  err_open(L);
  b64_open(L);
  hex_open(L);
  zl_open(L);
  aes_open(L);
  text_open(L);
  frame_open(L);
  json_open(L);

  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, 1, "_VERSION");
  lua_settop(L, 1);
  return 1;
}
