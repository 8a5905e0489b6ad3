/* buffer.c - growable byte buffer used for output scratch and frame input. */
#include <stdlib.h>
#include <string.h>
#include "ksms.h"

unsigned char *buf_grow(lua_State *L, buf_t *b, size_t n) {
  size_t need = b->len + n;
  if (need < b->len) luaL_error(L, "ksms: buffer size overflow");
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) {
    size_t next = cap * 2;
    cap = next > cap ? next : need;
  }
  unsigned char *p = realloc(b->data, cap);
  if (!p) luaL_error(L, "ksms: out of memory (%zu bytes)", cap);
  b->data = p;
  b->cap = cap;
  return b->data + b->len;
}

void buf_push(lua_State *L, buf_t *b, size_t from, size_t len, int wipe) {
  buf_t mine = *b;
  *b = (buf_t){0};
  lua_pushlstring(L, len ? (const char *)mine.data + from : "", len);
  buf_free(b); /* whatever a finalizer's nested call left there */
  if (wipe && mine.data) explicit_bzero(mine.data, mine.len > from + len ? mine.len : from + len);
  mine.len = 0;
  *b = mine;
  buf_shrink(b, BUF_KEEP);
}

void buf_drop(buf_t *b) {
  b->len = 0;
  buf_shrink(b, BUF_KEEP);
}

void buf_consume(buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void buf_shrink(buf_t *b, size_t keep) {
  if (b->cap <= keep || b->len > keep) return;
  unsigned char *p = realloc(b->data, keep);
  if (p || keep == 0) {
    b->data = p;
    b->cap = keep;
  }
}

void buf_free(buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

#define BUF_OWNED_MT "ksms.core.buffer"

static int buf_owned_gc(lua_State *L) {
  buf_free(luaL_checkudata(L, 1, BUF_OWNED_MT));
  return 0;
}

buf_t *buf_owned(lua_State *L) {
  buf_t *b = lua_newuserdata(L, sizeof *b);
  *b = (buf_t){0};
  if (luaL_newmetatable(L, BUF_OWNED_MT)) {
    lua_pushcfunction(L, buf_owned_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}
