/*
 * core.c - luaopen_ksms_core: builds the module table from the bindings of
 * every source file. One core_state per Lua state holds the scratch buffer
 * and the reused zlib and cipher contexts; it is freed by __gc.
 */
#define _GNU_SOURCE /* dladdr */
#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <errno.h>
#include <time.h>
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

/* core.monotonic() -> seconds (float) from a clock that never jumps:
 * what timers and the OneShot pacing measure against. */
static int core_monotonic(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* The longest one call waits. Casting a number past time_t's range (an
 * infinite or huge wait) is undefined behaviour, so the wait is clamped
 * first; a day is far past any pause ksms computes and fits every time_t. */
#define CORE_SLEEP_MAX 86400.0

/* core.sleep(seconds) -> seconds waited for: waits without a socket
 * (between reconnects). NaN or a negative number waits 0; more than
 * CORE_SLEEP_MAX waits CORE_SLEEP_MAX. */
static int core_sleep(lua_State *L) {
  lua_Number secs = luaL_checknumber(L, 1);
  if (!(secs > 0)) secs = 0; /* NaN too */
  else if (secs > CORE_SLEEP_MAX) secs = CORE_SLEEP_MAX;
  if (secs > 0) {
    struct timespec ts;
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (lua_Number)ts.tv_sec) * 1e9);
    if (ts.tv_nsec > 999999999L) ts.tv_nsec = 999999999L; /* rounding */
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  lua_pushnumber(L, secs);
  return 1;
}

void core_register(lua_State *L, const luaL_Reg *fns) {
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  luaL_setfuncs(L, fns, 1);
  lua_pop(L, 1);
}

/* libcurl's global init, once per process (the HTTP transport, http.c).
 *
 * curl_global_init is not thread-safe on every libcurl build (it is when
 * curl_version_info reports CURL_VERSION_THREADSAFE, 7.84+ built with
 * atomics), and it must not run while another thread uses libcurl. The
 * pthread_once guard makes our own call happen exactly once even when
 * several threads open ksms.core at the same time, but it cannot protect
 * against another library in the process calling curl_global_init or
 * curl_global_cleanup concurrently: in a threaded host, require ksms.core
 * once before starting the threads. We never call curl_global_cleanup.
 *
 * "Once per process" also needs this shared object to stay loaded: Lua 5.4
 * dlcloses C modules when a state is closed, which would reset the guard
 * and could unmap libcurl under a resolver thread it left running. So the
 * first open pins the object (RTLD_NODELETE). */
static pthread_once_t core_curl_once = PTHREAD_ONCE_INIT;
static CURLcode core_curl_status = CURLE_FAILED_INIT;

static void core_curl_init(void) {
  Dl_info info;
  if (dladdr((void *)luaopen_ksms_core, &info) && info.dli_fname)
    (void)dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
  core_curl_status = curl_global_init(CURL_GLOBAL_DEFAULT);
}

KSMS_EXPORT int luaopen_ksms_core(lua_State *L) {
  pthread_once(&core_curl_once, core_curl_init);
  if (core_curl_status != CURLE_OK)
    return luaL_error(L, "ksms.core: curl_global_init failed: %s",
                      curl_easy_strerror(core_curl_status));
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

  lua_pushcfunction(L, core_monotonic);
  lua_setfield(L, 1, "monotonic");
  lua_pushcfunction(L, core_sleep);
  lua_setfield(L, 1, "sleep");
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, 1, "_VERSION");   /* first: http_open reads it */

  err_open(L);
  b64_open(L);
  hex_open(L);
  zl_open(L);
  aes_open(L);
  text_open(L);
  frame_open(L);
  json_open(L);
  http_open(L);
  tcp_open(L);

  lua_settop(L, 1);
  return 1;
}
