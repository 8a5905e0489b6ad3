/*
 * ksms.h - what the core's C files share with each other. Everything here
 * has hidden visibility (the Makefile builds with -fvisibility=hidden);
 * only luaopen_ksms_core is exported from the shared object.
 */
#ifndef KSMS_H
#define KSMS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "compat.h"

#define KSMS_EXPORT __attribute__((visibility("default")))

/* ksms.core._VERSION; the default User-Agent is "ksms/" KSMS_VERSION. */
#define KSMS_VERSION "0.2.0"

KSMS_EXPORT int luaopen_ksms_core(lua_State *L);

/* Whatever the compiler flags (LuaRocks' builtin backend passes none of
 * ours), everything declared below stays inside the shared object. */
#pragma GCC visibility push(hidden)

/* ---- buffer.c: a growable byte buffer (prefix buf_) ---- */
typedef struct buf_t {
  unsigned char *data;
  size_t len;
  size_t cap;
} buf_t;

/* Grows b so n more bytes fit (the slow path of buf_reserve). */
unsigned char *buf_grow(lua_State *L, buf_t *b, size_t n);

/* Makes room for n more bytes and returns where they go (never NULL, even
 * for n = 0 on an empty buffer: no arithmetic on a NULL pointer). Raises a
 * Lua memory error when the allocation fails. */
static inline unsigned char *buf_reserve(lua_State *L, buf_t *b, size_t n) {
  if (b->data && b->cap - b->len >= n) return b->data + b->len;
  return buf_grow(L, b, n);
}

static inline void buf_append(lua_State *L, buf_t *b, const void *p, size_t n) {
  if (n == 0) return;
  memcpy(buf_reserve(L, b, n), p, n);
  b->len += n;
}

static inline void buf_putc(lua_State *L, buf_t *b, unsigned char c) {
  *buf_reserve(L, b, 1) = c;
  b->len++;
}
void buf_free(buf_t *b);
/* Pushes len bytes at b->data + from as a Lua string, then empties b
 * (wiping what it held first when wipe is set, for plaintext) and trims it
 * to BUF_KEEP bytes.
 * Why not a plain lua_pushlstring: on Lua 5.1/LuaJIT it may run a GC step,
 * and so a __gc finalizer, before it copies. A finalizer that calls into
 * ksms.core would then reuse the same scratch buffer under our feet, so the
 * buffer is detached from its owner while the string is made. */
void buf_push(lua_State *L, buf_t *b, size_t from, size_t len, int wipe);
/* How much scratch memory a Lua state keeps between calls. */
#define BUF_KEEP ((size_t)64 << 10)

/* The scratch buffers (core_state.out and .json) are borrowed for one
 * call. What one holds, and its length, when a call begins means nothing:
 * a raise (a memory error, misuse) can leave bytes behind, and a finalizer
 * may run another binding in between. So the rule, for every user:
 *   - begin with buf_scratch, which empties the buffer, and write from
 *     offset 0 (never reserve at a length someone else left);
 *   - end with buf_push (which empties it) or, on a failure that returns
 *     nil, err, with buf_drop (which empties it and gives back memory).
 * Nobody relies on finding it empty; every exit that returns leaves it so. */
static inline buf_t *buf_scratch(buf_t *b) {
  b->len = 0;
  return b;
}
/* Empties b and trims it to BUF_KEEP: the failure path of a scratch user. */
void buf_drop(buf_t *b);

/* Drops the first n bytes, keeping the rest. */
void buf_consume(buf_t *b, size_t n);
/* Gives back memory after a large burst so an idle buffer stays small. */
void buf_shrink(buf_t *b, size_t keep);

/* Pushes a userdata owning one empty buffer, freed by its __gc: a binding
 * that builds into it and raises half way leaks nothing. */
buf_t *buf_owned(lua_State *L);

/* ---- error.c: structured error objects (prefix err_) ----
 * A runtime failure is returned as nil plus a table
 *   { category=, code=, message=, provider="ksms", retryable=false }
 * whose metatable (the registry's "ksms.error") gives a readable
 * __tostring. The Lua side (ksms.errors) uses the same metatable. */
#define ERR_METATABLE "ksms.error"
int err_push(lua_State *L, const char *category, const char *code,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void err_open(lua_State *L);

/* ---- text.c: UTF-8, shared with the JSON writer (json.c) ---- */
/* Decodes the non-ASCII UTF-8 sequence at s (n bytes available). Returns
 * its length and stores the code point, or returns 0 when it is
 * ill-formed: a stray continuation byte, an overlong form, a surrogate,
 * a value above U+10FFFF or a truncated sequence. */
static inline size_t text_utf8_decode(const unsigned char *s, size_t n,
                                      uint32_t *cp) {
  unsigned lead = s[0];
  if (lead < 0xC2) return 0; /* continuation byte, or overlong C0/C1 lead */
  if (lead < 0xE0) {
    if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
    *cp = (uint32_t)(lead & 0x1F) << 6 | (s[1] & 0x3F);
    return 2;
  }
  if (lead < 0xF0) {
    /* The second byte's range rules out overlongs (E0) and surrogates (ED). */
    unsigned low = lead == 0xE0 ? 0xA0 : 0x80;
    unsigned high = lead == 0xED ? 0x9F : 0xBF;
    if (n < 3 || s[1] < low || s[1] > high || (s[2] & 0xC0) != 0x80)
      return 0;
    *cp = (uint32_t)(lead & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 |
          (s[2] & 0x3F);
    return 3;
  }
  if (lead < 0xF5) {
    /* Overlongs (F0) and values past U+10FFFF (F4) again by byte 2. */
    unsigned low = lead == 0xF0 ? 0x90 : 0x80;
    unsigned high = lead == 0xF4 ? 0x8F : 0xBF;
    if (n < 4 || s[1] < low || s[1] > high || (s[2] & 0xC0) != 0x80 ||
        (s[3] & 0xC0) != 0x80)
      return 0;
    *cp = (uint32_t)(lead & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
          (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    return 4;
  }
  return 0;
}

/* ---- the per-Lua-state context every binding gets as upvalue 1 ---- */
typedef struct zl_codec zl_codec;      /* zlib.c */
typedef struct aes_ctx aes_ctx;        /* aes.c */

typedef struct core_state {
  buf_t out;        /* scratch output; each call uses it and is done */
  buf_t json;       /* scratch JSON text when a call also compresses it */
  zl_codec *zlib;   /* reused deflate/inflate streams */
  aes_ctx *aes;     /* reused cipher context */
} core_state;

#define CORE_STATE(L) ((core_state *)lua_touserdata((L), lua_upvalueindex(1)))

/* Registers fns into the module table at index 1 with the core_state
 * userdata at index 2 as their single upvalue. */
void core_register(lua_State *L, const luaL_Reg *fns);

/* core.c: fills n bytes from the operating system's random source (the
 * one every random value of the core comes from). 0, or -1 when none
 * could be read. */
int core_random_bytes(void *out, size_t n);

/* Each source file registers its bindings (module at 1, state at 2). */
void b64_open(lua_State *L);
void hex_open(lua_State *L);
void zl_open(lua_State *L);
void aes_open(lua_State *L);
void text_open(lua_State *L);
void frame_open(lua_State *L);
void json_open(lua_State *L);
void http_open(lua_State *L);
void tcp_open(lua_State *L);
void resp_open(lua_State *L);

/* zlib.c, used by frame.c: deflate/inflate into a buffer with the state's
 * reused streams. They return NULL on success or a static error code and
 * set *msg to a readable reason. */
zl_codec *zl_codec_new(void);
void zl_codec_free(zl_codec *z);
const char *zl_deflate(lua_State *L, zl_codec *z, buf_t *out,
                       const unsigned char *in, size_t n, int level,
                       const char **msg);
const char *zl_inflate(lua_State *L, zl_codec *z, buf_t *out,
                       const unsigned char *in, size_t n, size_t max_out,
                       const char **msg);

/* frame.c: compresses n bytes and pushes the whole frame
 * ("Content-Length:N" CRLF zlib); returns 1, or 2 after pushing nil, err. */
int frame_push(lua_State *L, const unsigned char *payload, size_t n, int level);

/* aes.c */
aes_ctx *aes_ctx_new(void);
void aes_ctx_free(aes_ctx *a);

#pragma GCC visibility pop

#endif
