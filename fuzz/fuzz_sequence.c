/*
 * fuzz_sequence - many bindings called one after another on one Lua state,
 * so that what one call leaves in the state's shared scratch buffer (and in
 * the reused zlib and cipher contexts) is seen by the next. One of them is
 * conn:receive on a real TCP connection over 127.0.0.1 (the harness owns
 * the other end), since a receive hands back bytes through the same buffer.
 *
 * Input: a list of [op][len][bytes]. Ops: inflate, a frame decoder's feed
 * (one decoder per input), Base64 both ways, hex both ways, AES decrypt of
 * garbage and a round trip, deflate, a OneShot frame, cp949_len,
 * urlencode_form, and "the peer sends these bytes, we receive them".
 *
 * Invariants: every call's result is right on its own terms (round trips,
 * zlib's verdict, receive returns exactly the bytes the peer sent), whatever
 * came before it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include "ref_zlib.h"

static int fz_peer = -1;          /* our end of the connection */
static int fz_conn_ref = LUA_NOREF;

static void fz_setup(lua_State *L) {
  if (fz_conn_ref != LUA_NOREF) return;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1) ||
      getsockname(ls, (struct sockaddr *)&a, &al))
    fz_fail("cannot listen on 127.0.0.1");
  fz_core_fn(L, "tcp_connect");
  lua_pushliteral(L, "127.0.0.1");
  lua_pushinteger(L, ntohs(a.sin_port));
  fz_call(L, 2, 2, "tcp_connect");
  FZ_CHECK(lua_isuserdata(L, -2), "tcp_connect to our own listener failed");
  lua_pop(L, 1);
  fz_conn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  fz_peer = accept(ls, NULL, NULL);
  FZ_CHECK(fz_peer >= 0, "accept failed");
  close(ls);
}

static const char *fz_key = "0123456789abcdef", *fz_iv = "fedcba9876543210";

/* core[name](s) with one string argument; results left on the stack. */
static void fz_call1(lua_State *L, const char *name, const uint8_t *s, size_t n, int nres) {
  fz_core_fn(L, name);
  lua_pushlstring(L, (const char *)s, n);
  fz_call(L, 1, nres, name);
}

static void fz_expect_bytes(lua_State *L, int idx, const void *want, size_t wn, const char *what) {
  size_t n;
  const char *got = lua_tolstring(L, idx, &n);
  FZ_CHECK(got && n == wn && (n == 0 || memcmp(got, want, n) == 0), "%s: wrong bytes", what);
}

static void fz_receive(lua_State *L, const uint8_t *s, size_t n, unsigned extra) {
  if (n == 0) return;
  FZ_CHECK(send(fz_peer, s, n, MSG_NOSIGNAL) == (ssize_t)n, "peer send failed");
  uint8_t *got = malloc(n);
  size_t have = 0;
  while (have < n) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, fz_conn_ref);
    lua_getfield(L, -1, "receive");
    lua_insert(L, -2);
    lua_pushinteger(L, (lua_Integer)(n - have + extra % 3 * 7));
    lua_pushnumber(L, 5);
    fz_call(L, 3, 2, "conn:receive");
    size_t k;
    const char *p = lua_tolstring(L, -2, &k);
    FZ_CHECK(p, "conn:receive failed with the peer's bytes waiting");
    FZ_CHECK(k >= 1 && k <= n - have, "conn:receive returned %zu bytes, %zu were sent", k, n - have);
    memcpy(got + have, p, k);
    have += k;
    lua_pop(L, 2);
  }
  FZ_CHECK(memcmp(got, s, n) == 0,
           "conn:receive returned bytes the peer never sent (stale scratch buffer?)");
  free(got);
}

static void fz_one(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  fz_setup(L);
  fz_in in = { data, size };
  /* A successful call leaves the scratch buffer empty: start each input
   * from there, so that a break reproduces from its input alone. */
  fz_call1(L, "b64encode", (const uint8_t *)"x", 1, 1);
  lua_pop(L, 1);
  fz_core_fn(L, "frame_decoder");
  fz_call(L, 0, 1, "frame_decoder");
  int dec = lua_gettop(L);
  while (in.n >= 1) {
    unsigned op = fz_byte(&in) % 12;
    size_t n;
    const uint8_t *s = fz_str(&in, &n);
    int top = lua_gettop(L);
    switch (op) {
      case 0: { /* inflate, against zlib */
        uint8_t *ref;
        size_t rn;
        const char *want = fz_ref_inflate(s, n, (size_t)1 << 20, &ref, &rn);
        fz_call1(L, "inflate", s, n, 2);
        if (!want) { fz_expect_bytes(L, -2, ref, rn, "inflate"); free(ref); }
        else FZ_CHECK(lua_isnil(L, -2), "inflate accepted what zlib refuses");
        break;
      }
      case 1: /* the decoder: payloads must be strings, errors ksms errors */
        lua_getfield(L, dec, "feed");
        lua_pushvalue(L, dec);
        lua_pushlstring(L, (const char *)s, n);
        fz_call(L, 2, 2, "decoder:feed");
        if (!lua_isnil(L, -1)) fz_check_error(L, -1, "protocol", "decoder:feed");
        break;
      case 2: /* a whole frame, compressed by zlib, fed to the decoder */ {
        size_t cn;
        uint8_t *c = fz_ref_deflate(s, n, 9, &cn);
        if (n && s[0] & 1) c[cn / 2] ^= 0x5A; /* sometimes corrupt */
        char head[40];
        int hl = snprintf(head, sizeof head, "Content-Length:%zu\r\n", cn);
        lua_getfield(L, dec, "feed");
        lua_pushvalue(L, dec);
        lua_pushlstring(L, head, (size_t)hl);
        lua_pushlstring(L, (const char *)c, cn);
        lua_concat(L, 2);
        fz_call(L, 2, 2, "decoder:feed");
        free(c);
        break;
      }
      case 3:
        fz_call1(L, "b64encode", s, n, 1);
        fz_core_fn(L, "b64decode");
        lua_insert(L, -2);
        fz_call(L, 1, 1, "b64decode");
        fz_expect_bytes(L, -1, s, n, "b64decode(b64encode(x))");
        break;
      case 4: fz_call1(L, "b64decode", s, n, 2); break;
      case 5:
        fz_call1(L, "hex", s, n, 1);
        fz_core_fn(L, "unhex");
        lua_insert(L, -2);
        fz_call(L, 1, 1, "unhex");
        fz_expect_bytes(L, -1, s, n, "unhex(hex(x))");
        break;
      case 6:
        fz_core_fn(L, "aes128cbc_decrypt");
        lua_pushlstring(L, (const char *)s, n);
        lua_pushstring(L, fz_key);
        lua_pushstring(L, fz_iv);
        fz_call(L, 3, 2, "aes128cbc_decrypt");
        break;
      case 7:
        fz_core_fn(L, "aes128cbc_decrypt");
        fz_core_fn(L, "aes128cbc_encrypt");
        lua_pushlstring(L, (const char *)s, n);
        lua_pushstring(L, fz_key);
        lua_pushstring(L, fz_iv);
        fz_call(L, 3, 1, "aes128cbc_encrypt");
        lua_pushstring(L, fz_key);
        lua_pushstring(L, fz_iv);
        fz_call(L, 3, 1, "aes128cbc_decrypt");
        fz_expect_bytes(L, -1, s, n, "decrypt(encrypt(x))");
        break;
      case 8: {
        int level = n ? s[0] % 10 : 9;
        fz_core_fn(L, "inflate");
        fz_core_fn(L, "deflate");
        lua_pushlstring(L, (const char *)s, n);
        lua_pushinteger(L, level);
        fz_call(L, 2, 1, "deflate");
        fz_call(L, 1, 1, "inflate");
        fz_expect_bytes(L, -1, s, n, "inflate(deflate(x))");
        break;
      }
      case 9: fz_call1(L, "cp949_len", s, n, 2); break;
      case 10:
        fz_core_fn(L, "urlencode_form");
        lua_createtable(L, 1, 0);
        lua_createtable(L, 2, 0);
        lua_pushliteral(L, "k");
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, (const char *)s, n);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, 1);
        fz_call(L, 1, 1, "urlencode_form");
        break;
      case 11: fz_receive(L, s, n, op); break;
    }
    lua_settop(L, top);
  }
  fz_done(L);
}
