/*
 * harness.h - what every libFuzzer harness of ksms.core shares (prefix fz_).
 *
 * A harness links the csrc/ sources statically (built with the
 * sanitizers) and the system's liblua5.4. One lua_State lives for the whole
 * run: the standard libraries, ksms.core (as package.loaded["ksms.core"])
 * and, for the differential checks, lua-cjson. Each input runs against it
 * and ends with a full collection, so finalizers run at a known point and a
 * crash reproduces from its file alone. (What the core itself keeps between
 * calls, its scratch buffer and codec contexts, is fuzz_sequence's subject.)
 *
 * A broken invariant prints what broke and aborts: libFuzzer saves the input
 * as crash-<sha1> like any sanitizer report.
 */
#ifndef KSMS_FUZZ_HARNESS_H
#define KSMS_FUZZ_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_ksms_core(lua_State *L);

static lua_State *fz_L;
static int fz_core_ref = LUA_NOREF;   /* the module table */
static int fz_cjson_ref = LUA_NOREF;  /* cjson, or LUA_NOREF when absent */

/* The input being run, for KSMS_FUZZ_KEEP_GOING. */
static const uint8_t *fz_cur;
static size_t fz_cur_n;
static jmp_buf fz_jump;
static int fz_jump_set;

/* Saves the input under dir, once per kind of break (its format string). */
static void fz_keep(const char *dir, const char *fmt, const char *msg) {
  static const char *seen[64];
  static int nseen;
  for (int i = 0; i < nseen; i++)
    if (seen[i] == fmt) return;
  if (nseen < 64) seen[nseen++] = fmt;
  uint32_t h = 2166136261u;
  for (const char *p = fmt; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
  char path[4096];
  snprintf(path, sizeof path, "%s/break-%08x", dir, h);
  FILE *f = fopen(path, "wb");
  if (f) {
    fwrite(fz_cur, 1, fz_cur_n, f);
    fclose(f);
  }
  snprintf(path, sizeof path, "%s/break-%08x.txt", dir, h);
  f = fopen(path, "w");
  if (f) {
    fprintf(f, "%s\n", msg);
    fclose(f);
  }
}

/* An invariant broke: print it and abort (libFuzzer keeps the input as
 * crash-<sha1>). With KSMS_FUZZ_KEEP_GOING=dir the first input of each kind
 * of break is saved there instead and fuzzing goes on (long runs). This is
 * only ever called from harness code, never from inside a Lua call, so
 * jumping out leaves the state sound. */
static void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fz_fail(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const char *dir = getenv("KSMS_FUZZ_KEEP_GOING");
  if (dir && *dir && fz_jump_set) {
    fz_keep(dir, fmt, msg);
    longjmp(fz_jump, 1);
  }
  fprintf(stderr, "ksms fuzz: invariant broken: %s\n", msg);
  abort();
}

#define FZ_CHECK(cond, ...) \
  do { if (!(cond)) fz_fail(__VA_ARGS__); } while (0)

/* The state, made on first use. */
static lua_State *fz_state(void) {
  if (fz_L) return fz_L;
  lua_State *L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  luaL_requiref(L, "ksms.core", luaopen_ksms_core, 0);
  fz_core_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* lua-cjson from the Debian package, for the differential checks. */
  lua_getglobal(L, "package");
  lua_pushstring(L, "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;/usr/local/lib/lua/5.4/?.so");
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  if (lua_pcall(L, 1, 1, 0) == 0) {
    fz_cjson_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    fprintf(stderr, "ksms fuzz: lua-cjson not found (%s)\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  fz_L = L;
  return L;
}

/* Pushes core[name]. */
static void fz_core_fn(lua_State *L, const char *name) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, fz_core_ref);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  FZ_CHECK(lua_type(L, -1) == LUA_TFUNCTION, "core.%s is not a function", name);
}

/* Ends an input: empty stack, full collection (finalizers run now). */
static void fz_done(lua_State *L) {
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
}

/* Calls the function under nargs arguments; a raise is an invariant break
 * (runtime input must never raise). Leaves nres results. */
static void fz_call(lua_State *L, int nargs, int nres, const char *what) {
  if (lua_pcall(L, nargs, nres, 0) != 0)
    fz_fail("%s raised: %s", what, lua_tostring(L, -1) ? lua_tostring(L, -1) : "(non-string)");
}

/* Like fz_call, but a raise is allowed (programmer misuse); returns 0 and
 * leaves the message when it raised. */
static int fz_try(lua_State *L, int nargs, int nres) {
  return lua_pcall(L, nargs, nres, 0) == 0;
}

static const char *const fz_categories[] = {
  "invalid_input", "auth", "balance", "sender_number", "recipient", "message_length",
  "schedule", "template", "channel", "rate_limit", "duplicate", "server", "network",
  "timeout", "protocol", "unknown", NULL,
};

/* The value at idx must be a ksms error: the core's metatable, a known
 * category (and the expected one when want_category is given), a string
 * code, a string message, and a tostring that works. Returns its code. */
static const char *fz_check_error(lua_State *L, int idx, const char *want_category,
                                  const char *what) {
  idx = lua_absindex(L, idx);
  FZ_CHECK(lua_type(L, idx) == LUA_TTABLE, "%s: error is a %s, not a table", what,
           luaL_typename(L, idx));
  FZ_CHECK(lua_getmetatable(L, idx), "%s: error has no metatable", what);
  luaL_getmetatable(L, "ksms.error");
  FZ_CHECK(lua_rawequal(L, -1, -2), "%s: error's metatable is not ksms.error", what);
  lua_pop(L, 2);
  lua_getfield(L, idx, "category");
  const char *cat = lua_tostring(L, -1);
  FZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "%s: error category is not a string", what);
  int known = 0;
  for (const char *const *c = fz_categories; *c; c++) known |= strcmp(*c, cat) == 0;
  FZ_CHECK(known, "%s: unknown error category '%s'", what, cat);
  FZ_CHECK(!want_category || strcmp(cat, want_category) == 0,
           "%s: error category '%s', expected '%s'", what, cat, want_category);
  lua_pop(L, 1);
  lua_getfield(L, idx, "message");
  FZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "%s: error message is not a string", what);
  lua_pop(L, 1);
  lua_getfield(L, idx, "code");
  FZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "%s: error code is not a string", what);
  const char *code = lua_tostring(L, -1);
  lua_pop(L, 1); /* the string stays alive: the error table holds it */
  lua_getglobal(L, "tostring");
  lua_pushvalue(L, idx);
  fz_call(L, 1, 1, "tostring(err)");
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  FZ_CHECK(s && n >= 5 && memcmp(s, "ksms[", 5) == 0, "%s: tostring(err) does not start with ksms[",
           what);
  lua_pop(L, 1);
  return code;
}

/* A small reader over the fuzz input (FuzzedDataProvider, in C). */
typedef struct fz_in {
  const uint8_t *p;
  size_t n;
} fz_in;

static unsigned fz_byte(fz_in *in) {
  if (!in->n) return 0;
  in->n--;
  return *in->p++;
}

static unsigned fz_u16(fz_in *in) { return fz_byte(in) | fz_byte(in) << 8; }

/* Takes up to max bytes (fewer when the input runs out). */
static const uint8_t *fz_take(fz_in *in, size_t max, size_t *got) {
  size_t k = max < in->n ? max : in->n;
  const uint8_t *p = in->p;
  in->p += k;
  in->n -= k;
  *got = k;
  return p;
}

/* A length-prefixed string: one byte of length (0..255) then the bytes. */
static const uint8_t *fz_str(fz_in *in, size_t *got) {
  return fz_take(in, fz_byte(in), got);
}

/* ---- an independent UTF-8 validator (Unicode 15, table 3-7) ---- */

/* Length of the well-formed sequence at s, 0 when ill-formed. */
static size_t fz_utf8_seq(const uint8_t *s, size_t n, uint32_t *cp) {
  uint8_t b0 = s[0];
  if (b0 < 0x80) { *cp = b0; return 1; }
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else return 0;
  if (n < len) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  uint32_t v = b0 & (0xFF >> (len + 1));
  for (size_t i = 1; i < len; i++) v = v << 6 | (s[i] & 0x3F);
  *cp = v;
  return len;
}

/* 0-based offset of the first ill-formed sequence, or (size_t)-1. */
static size_t fz_utf8_invalid_at(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t k = fz_utf8_seq(s + i, n - i, &cp);
    if (!k) return i;
    i += k;
  }
  return (size_t)-1;
}

/* ---- the libFuzzer entry point: each harness defines fz_one ---- */

static void fz_one(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_cur = data;
  fz_cur_n = size;
  if (setjmp(fz_jump)) {
    fz_jump_set = 0;
    if (fz_L) {
      lua_settop(fz_L, 0);
      lua_gc(fz_L, LUA_GCCOLLECT, 0);
    }
    return 0;
  }
  fz_jump_set = 1;
  fz_one(data, size);
  fz_jump_set = 0;
  return 0;
}

#endif
