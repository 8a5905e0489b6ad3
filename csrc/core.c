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
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>
#include <openssl/rand.h>
#include "ksms.h"

#define CORE_STATE_MT "ksms.core.state"

/* The last SIGINT or SIGTERM caught once core.catch_stop_signals() ran
 * (0: none). A flag the handler sets and the loop reads: nothing else is
 * safe in a signal handler. */
static volatile sig_atomic_t core_stop_signal_seen = 0;

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
    /* A stop signal ends the wait early: the loop that sleeps notices it. */
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !core_stop_signal_seen) {
    }
  }
  lua_pushnumber(L, secs);
  return 1;
}

/* The one random source of the core: OpenSSL's RAND_bytes (seeded by the
 * kernel, reseeded after fork), /dev/urandom when it fails. 0, or -1 when
 * neither gave n bytes. */
int core_random_bytes(void *out, size_t n) {
  if (n <= INT_MAX && RAND_bytes(out, (int)n) == 1) return 0;
  FILE *f = fopen("/dev/urandom", "rb");
  size_t got = f ? fread(out, 1, n, f) : 0;
  if (f) fclose(f);
  return got == n ? 0 : -1;
}

static uint64_t core_random_u64(lua_State *L) {
  uint64_t v;
  if (core_random_bytes(&v, sizeof v) != 0) luaL_error(L, "ksms.core: no random bytes");
  return v;
}

/* An integer argument, checked before any cast (LuaJIT's
 * luaL_checkinteger casts a double out of range). */
static lua_Integer core_checkinteger(lua_State *L, int i) {
  luaL_checknumber(L, i);
  luaL_argcheck(L, lua_isinteger(L, i), i, "number has no integer representation");
  return lua_tointeger(L, i);
}

/* core.random() -> float in [0, 1)
 * core.random(m) -> integer in [1, m]
 * core.random(m, n) -> integer in [m, n]
 * math.random's contract from core_random_bytes: LuaJIT and OpenResty
 * never seed math.random, so processes started together (or nginx
 * workers forked from one master) would draw the same numbers. Used for
 * OneShot message id prefixes and reconnect jitter. */
static int core_random(lua_State *L) {
  int top = lua_gettop(L);
  if (top == 0) {
    lua_pushnumber(L, (lua_Number)(core_random_u64(L) >> 11) * 0x1.0p-53);
    return 1;
  }
  lua_Integer lo = 1, hi;
  if (top == 1) {
    hi = core_checkinteger(L, 1);
  } else {
    lo = core_checkinteger(L, 1);
    hi = core_checkinteger(L, 2);
  }
  luaL_argcheck(L, lo <= hi, top == 1 ? 1 : 2, "interval is empty");
  uint64_t span = (uint64_t)hi - (uint64_t)lo; /* how many values, less one */
  uint64_t v = core_random_u64(L);
  if (span != UINT64_MAX) {
    /* Draw below the largest multiple of span + 1: the modulo of what is
     * left would favour the low values. */
    uint64_t count = span + 1, limit = UINT64_MAX - UINT64_MAX % count;
    while (v >= limit) v = core_random_u64(L);
    v %= count;
  }
  lua_pushinteger(L, (lua_Integer)((uint64_t)lo + v));
  return 1;
}

/* core.getpid() -> integer: this process's id (the outbox's worker owner
 * ids name it, so another process on the host can tell whether the owner
 * is still running). */
static int core_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* Whether /proc says pid is a zombie (exited, not yet reaped by its
 * parent): kill() still finds it, but it holds no file and runs no code.
 * Where /proc is absent the answer is no. */
static int core_pid_zombie(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *close = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
  return close && close[1] == ' ' && close[2] == 'Z';
}

/* core.pid_alive(pid) -> boolean: whether a process with that id runs on
 * this host: kill(pid, 0), where EPERM (it exists, owned by another user)
 * counts as alive and a zombie (exited, unreaped) as dead. pid must be a
 * positive integer: 0 and negative ids name process groups to kill(), so
 * they raise. */
static int core_pid_alive(lua_State *L) {
  lua_Integer pid = core_checkinteger(L, 1);
  luaL_argcheck(L, pid > 0 && pid == (lua_Integer)(pid_t)pid, 1, "not a process id");
  int alive = kill((pid_t)pid, 0) == 0 || errno == EPERM;
  if (alive && core_pid_zombie((pid_t)pid)) alive = 0;
  lua_pushboolean(L, alive);
  return 1;
}

static void core_on_stop_signal(int sig) { core_stop_signal_seen = sig; }

/* core.catch_stop_signals() -> true: from now on SIGINT and SIGTERM only
 * set a flag (core.stop_signal() reads it), so a long-running loop (the
 * fleet binder) can unbind and hand over before it exits. For the whole
 * process: call it from a program's main script, not from a library. */
static int core_catch_stop_signals(lua_State *L) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = core_on_stop_signal;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
    return luaL_error(L, "ksms.core: sigaction failed: %s", strerror(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* core.stop_signal() -> "SIGINT" | "SIGTERM" | nil: the last stop signal
 * caught since core.catch_stop_signals(). */
static int core_stop_signal(lua_State *L) {
  int sig = core_stop_signal_seen;
  if (sig == SIGINT) lua_pushliteral(L, "SIGINT");
  else if (sig == SIGTERM) lua_pushliteral(L, "SIGTERM");
  else lua_pushnil(L);
  return 1;
}

/* core.hostname() -> string: gethostname(), "localhost" when it fails (the
 * host part of an outbox owner id: pids are only compared on one host). */
static int core_hostname(lua_State *L) {
  char name[256];
  if (gethostname(name, sizeof name) != 0) {
    lua_pushliteral(L, "localhost");
    return 1;
  }
  name[sizeof name - 1] = '\0';
  lua_pushstring(L, name);
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
  lua_pushcfunction(L, core_random);
  lua_setfield(L, 1, "random");
  lua_pushcfunction(L, core_getpid);
  lua_setfield(L, 1, "getpid");
  lua_pushcfunction(L, core_pid_alive);
  lua_setfield(L, 1, "pid_alive");
  lua_pushcfunction(L, core_hostname);
  lua_setfield(L, 1, "hostname");
  lua_pushcfunction(L, core_catch_stop_signals);
  lua_setfield(L, 1, "catch_stop_signals");
  lua_pushcfunction(L, core_stop_signal);
  lua_setfield(L, 1, "stop_signal");
  lua_pushliteral(L, KSMS_VERSION);
  lua_setfield(L, 1, "_VERSION");

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
  resp_open(L);

  lua_settop(L, 1);
  return 1;
}
