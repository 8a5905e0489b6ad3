/*
 * fuzz_resp - the RESP codec (core.resp_reader, :feed, :next;
 * core.resp_encode) on a byte stream cut into random pieces.
 *
 * Input: byte 0 picks max_bytes, byte 1 seeds the piece sizes, byte 2 the
 * mode; the rest is the stream (mode even) or length-prefixed arguments
 * (mode odd) that resp_encode writes as a command.
 *
 * Invariants (each run ends with a "\n" fed after the stream): no raise; the stream fed whole and fed in pieces gives the
 * same replies (compared as a canonical dump) and the same failure; a
 * failure is a protocol error and the reader stays failed; every reply is
 * a string, a number, core.resp_null, { err = string } or { n = count, ... }
 * with count elements; an encoded command reads back as the array of its
 * arguments.
 */
#include "harness.h"

typedef struct fz_dump {
  char *p;
  size_t n, cap;
} fz_dump;

static void fz_put(fz_dump *d, const void *p, size_t n) {
  if (d->n + n > d->cap) {
    d->cap = (d->n + n) * 2 + 64;
    d->p = realloc(d->p, d->cap);
    if (!d->p) abort();
  }
  memcpy(d->p + d->n, p, n);
  d->n += n;
}

/* Appends a canonical form of the reply at idx; checks its shape. */
static void fz_dump_value(lua_State *L, int idx, fz_dump *d, int depth) {
  idx = lua_absindex(L, idx);
  char tmp[64];
  FZ_CHECK(depth < 16, "reply nested %d deep", depth);
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      int k = snprintf(tmp, sizeof tmp, "s%zu:", n);
      fz_put(d, tmp, (size_t)k);
      fz_put(d, s, n);
      break;
    }
    case LUA_TNUMBER: {
      int k = snprintf(tmp, sizeof tmp, "i%lld;", (long long)lua_tointeger(L, idx));
      fz_put(d, tmp, (size_t)k);
      break;
    }
    case LUA_TLIGHTUSERDATA:
      FZ_CHECK(lua_touserdata(L, idx) == NULL, "a light userdata reply is not resp_null");
      fz_put(d, "N", 1);
      break;
    case LUA_TTABLE: {
      lua_getfield(L, idx, "err");
      if (!lua_isnil(L, -1)) {
        FZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "err is not a string");
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        int k = snprintf(tmp, sizeof tmp, "e%zu:", n);
        fz_put(d, tmp, (size_t)k);
        fz_put(d, s, n);
        lua_pop(L, 1);
        break;
      }
      lua_pop(L, 1);
      lua_getfield(L, idx, "n");
      FZ_CHECK(lua_isinteger(L, -1), "array without n");
      lua_Integer count = lua_tointeger(L, -1);
      lua_pop(L, 1);
      FZ_CHECK(count >= 0 && (size_t)count == (size_t)lua_rawlen(L, idx), "n = %lld, length %zu",
               (long long)count, (size_t)lua_rawlen(L, idx));
      int k = snprintf(tmp, sizeof tmp, "a%lld[", (long long)count);
      fz_put(d, tmp, (size_t)k);
      for (lua_Integer i = 1; i <= count; i++) {
        lua_rawgeti(L, idx, i);
        fz_dump_value(L, -1, d, depth + 1);
        lua_pop(L, 1);
      }
      fz_put(d, "]", 1);
      break;
    }
    default:
      fz_fail("a reply is a %s", luaL_typename(L, idx));
  }
}

typedef struct fz_result {
  fz_dump dump;
  char fail[32];
} fz_result;

/* Feeds s to a new reader in pieces (sizes from seed; 0: whole). */
static void fz_read(lua_State *L, const uint8_t *s, size_t n, lua_Integer max_bytes,
                    unsigned seed, int tail, fz_result *r) {
  memset(r, 0, sizeof *r);
  fz_core_fn(L, "resp_reader");
  lua_pushinteger(L, max_bytes);
  fz_call(L, 1, 1, "resp_reader");
  int rd = lua_gettop(L);
  uint32_t rnd = seed * 2654435761u + 1;
  size_t pos = 0;
  /* A last "\n" after the stream: the reader looks for replies only once
   * a '\n' has come (resp.c), so both runs end having looked. */
  while (pos < n + (tail ? 1 : 0) && !r->fail[0]) {
    size_t piece = n - pos;
    if (seed) {
      rnd = rnd * 1103515245u + 12345u;
      size_t k = 1 + (rnd >> 8) % 9;
      if (k < piece) piece = k;
    }
    lua_getfield(L, rd, "feed");
    lua_pushvalue(L, rd);
    if (pos == n) {
      lua_pushliteral(L, "\n");
      piece = 1;
    } else {
      lua_pushlstring(L, (const char *)s + pos, piece);
    }
    fz_call(L, 2, 2, "reader:feed");
    pos += piece;
    if (lua_isnil(L, -2)) {
      snprintf(r->fail, sizeof r->fail, "%s", fz_check_error(L, -1, "protocol", "reader:feed"));
      lua_pop(L, 2);
      break;
    }
    lua_pop(L, 2);
    for (;;) {
      lua_getfield(L, rd, "next");
      lua_pushvalue(L, rd);
      fz_call(L, 1, 2, "reader:next");
      if (!lua_isnil(L, -1)) {
        FZ_CHECK(lua_isnil(L, -2), "next returned a reply and an error");
        snprintf(r->fail, sizeof r->fail, "%s", fz_check_error(L, -1, "protocol", "reader:next"));
        lua_pop(L, 2);
        /* once failed, always failed */
        lua_getfield(L, rd, "next");
        lua_pushvalue(L, rd);
        fz_call(L, 1, 2, "reader:next after a failure");
        FZ_CHECK(lua_isnil(L, -2) && !lua_isnil(L, -1), "reader works again after a failure");
        lua_pop(L, 2);
        break;
      }
      if (lua_isnil(L, -2)) {
        lua_pop(L, 2);
        break;
      }
      fz_dump_value(L, -2, &r->dump, 0);
      lua_pop(L, 2);
    }
  }
  lua_getfield(L, rd, "close");
  lua_pushvalue(L, rd);
  fz_call(L, 1, 0, "reader:close");
  lua_getfield(L, rd, "close");
  lua_pushvalue(L, rd);
  fz_call(L, 1, 0, "reader:close twice");
  lua_settop(L, rd - 1);
}

static void fz_same(const fz_result *a, const fz_result *b, const char *what) {
  /* A too_large in one and not the other can differ in how much was read
   * first (feed refuses by bytes held); then only the replies' prefix is
   * compared. */
  size_t k = a->dump.n < b->dump.n ? a->dump.n : b->dump.n;
  FZ_CHECK(k == 0 || memcmp(a->dump.p, b->dump.p, k) == 0, "%s: replies differ", what);
  if (!strcmp(a->fail, "too_large") || !strcmp(b->fail, "too_large")) return;
  FZ_CHECK(a->dump.n == b->dump.n, "%s: %zu vs %zu dump bytes", what, a->dump.n, b->dump.n);
  FZ_CHECK(strcmp(a->fail, b->fail) == 0, "%s: failure '%s' vs '%s'", what, a->fail, b->fail);
}

static void fz_encode(lua_State *L, fz_in *in) {
  fz_dump want = { 0 };
  lua_newtable(L);
  int t = lua_gettop(L), argc = 0;
  while (in->n && argc < 64) {
    size_t n;
    const uint8_t *p = fz_str(in, &n);
    lua_pushlstring(L, (const char *)p, n);
    lua_rawseti(L, t, ++argc);
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "s%zu:", n);
    fz_put(&want, tmp, (size_t)k);
    fz_put(&want, p, n);
  }
  fz_core_fn(L, "resp_encode");
  lua_pushvalue(L, t);
  if (argc == 0) {
    FZ_CHECK(!fz_try(L, 1, 1), "resp_encode accepted an empty command");
    lua_settop(L, t - 1);
    free(want.p);
    return;
  }
  fz_call(L, 1, 1, "resp_encode");
  size_t wn;
  const uint8_t *wire = (const uint8_t *)lua_tolstring(L, -1, &wn);
  fz_result r;
  fz_read(L, wire, wn, (lua_Integer)1 << 24, 3, 0, &r);
  FZ_CHECK(!r.fail[0], "an encoded command does not read back: %s", r.fail);
  char head[32];
  int hk = snprintf(head, sizeof head, "a%d[", argc);
  FZ_CHECK(r.dump.n == (size_t)hk + want.n + 1 && memcmp(r.dump.p, head, (size_t)hk) == 0 &&
               memcmp(r.dump.p + hk, want.p, want.n) == 0,
           "an encoded command reads back different");
  free(r.dump.p);
  free(want.p);
  lua_settop(L, t - 1);
}

static void fz_one(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  fz_in in = { data, size };
  unsigned b0 = fz_byte(&in), seed = fz_byte(&in), mode = fz_byte(&in);
  lua_Integer max_bytes = b0 & 0x80 ? (lua_Integer)1 << 20 : 1 + (lua_Integer)b0 * 8;
  if (mode & 1) {
    fz_encode(L, &in);
  } else {
    fz_result whole, pieces;
    fz_read(L, in.p, in.n, max_bytes, 0, 1, &whole);
    fz_read(L, in.p, in.n, max_bytes, seed | 1, 1, &pieces);
    fz_same(&whole, &pieces, "fed whole vs fed in pieces");
    free(whole.dump.p);
    free(pieces.dump.p);
  }
  fz_done(L);
}
