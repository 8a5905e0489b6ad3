/*
 * tcp.c - a blocking TCP client with timeouts (prefix tcp_), the transport
 * under the OneShot session.
 *
 * The socket is non-blocking from the start; every wait is a poll() bounded
 * by what is left of the call's deadline (CLOCK_MONOTONIC), so no call
 * blocks past its timeout, whatever the peer does. Name resolution is the
 * one exception: getaddrinfo cannot be bounded (pass an IP address for a
 * hard bound). SIGPIPE is never raised (MSG_NOSIGNAL).
 *
 * Errors are nil, err with the core's error objects:
 *   connect: category "network" code "dns" | "connect", or "timeout"/"timeout"
 *   send:    category "network" code "send" | "closed", or "timeout"/"timeout";
 *            err.written = bytes of this call that went out before it failed
 *   receive: category "network" code "closed" (orderly close by the peer)
 *            | "recv", or "timeout"/"timeout" (nothing arrived in time)
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include "ksms.h"

#define TCP_CONN_MT "ksms.core.tcp_conn"
#define TCP_DEFAULT_CONNECT 10.0
#define TCP_DEFAULT_READ 30.0
#define TCP_DEFAULT_WRITE 30.0
#define TCP_DEFAULT_MAX ((size_t)64 << 10)
#define TCP_MAX_MAX ((size_t)16 << 20)

typedef struct tcp_conn {
  int fd;                 /* -1 once closed */
  double read_timeout;    /* seconds */
  double write_timeout;
} tcp_conn;

static double tcp_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for events on fd until deadline. Returns >0 when ready, 0 on
 * timeout, -1 on a poll error (errno set). Retries on EINTR. */
static int tcp_wait(int fd, short events, double deadline) {
  for (;;) {
    double left = deadline - tcp_now();
    if (left <= 0) return 0;
    int ms = left > 2e9 / 1000 ? 2000000000 : (int)ceil(left * 1000);
    struct pollfd p = { .fd = fd, .events = events, .revents = 0 };
    int r = poll(&p, 1, ms);
    if (r > 0) return r;
    if (r < 0 && errno != EINTR) return -1;
  }
}

/* Reads an optional positive number of seconds from the table at idx. */
static double tcp_opt_seconds(lua_State *L, int idx, const char *name, double def) {
  lua_getfield(L, idx, name);
  double v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "ksms.core.tcp_connect: %s must be a number of seconds", name);
    v = lua_tonumber(L, -1);
    if (!(v > 0)) luaL_error(L, "ksms.core.tcp_connect: %s must be > 0", name);
  }
  lua_pop(L, 1);
  return v;
}

static void tcp_set_retryable(lua_State *L) {
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "retryable");
}

static tcp_conn *tcp_check(lua_State *L) {
  return luaL_checkudata(L, 1, TCP_CONN_MT);
}

/* Tries one address; returns 0 connected, else an errno (ETIMEDOUT when the
 * deadline passed). On success *out_fd holds the socket. */
static int tcp_try(const struct addrinfo *ai, double deadline, int *out_fd) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  ai->ai_protocol);
  if (fd < 0) return errno;
  int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
  if (rc != 0 && errno != EINPROGRESS && errno != EINTR) {
    int e = errno;
    close(fd);
    return e;
  }
  if (rc != 0) {
    int w = tcp_wait(fd, POLLOUT, deadline);
    if (w <= 0) {
      int e = w == 0 ? ETIMEDOUT : errno;
      close(fd);
      return e;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
    if (soerr != 0) {
      close(fd);
      return soerr;
    }
  }
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  *out_fd = fd;
  return 0;
}

/* core.tcp_connect(host, port, [opts]) -> conn | nil, err
 * opts: connect_timeout, read_timeout, write_timeout (seconds; 10, 30, 30).
 * Every address host resolves to is tried in turn within connect_timeout. */
static int tcp_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  if (port < 1 || port > 65535) return luaL_argerror(L, 2, "port out of range");
  double connect_t = TCP_DEFAULT_CONNECT, read_t = TCP_DEFAULT_READ, write_t = TCP_DEFAULT_WRITE;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    connect_t = tcp_opt_seconds(L, 3, "connect_timeout", connect_t);
    read_t = tcp_opt_seconds(L, 3, "read_timeout", read_t);
    write_t = tcp_opt_seconds(L, 3, "write_timeout", write_t);
  }
  /* The userdata first, so nothing below can raise with a socket open. */
  tcp_conn *c = lua_newuserdata(L, sizeof *c);
  c->fd = -1;
  c->read_timeout = read_t;
  c->write_timeout = write_t;
  luaL_setmetatable(L, TCP_CONN_MT);

  double deadline = tcp_now() + connect_t;
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", (int)port);
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  int gai = getaddrinfo(host, portstr, &hints, &res);
  if (gai != 0) {
    err_push(L, "network", "dns", "cannot resolve %s: %s", host, gai_strerror(gai));
    tcp_set_retryable(L);
    return 2;
  }
  int last = ECONNREFUSED;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    int fd = -1;
    last = tcp_try(ai, deadline, &fd);
    if (last == 0) {
      c->fd = fd;
      break;
    }
    if (last == ETIMEDOUT) break;
  }
  freeaddrinfo(res);
  if (c->fd < 0) {
    if (last == ETIMEDOUT)
      err_push(L, "timeout", "timeout", "connecting to %s:%d timed out after %gs", host,
               (int)port, connect_t);
    else
      err_push(L, "network", "connect", "cannot connect to %s:%d: %s", host, (int)port,
               strerror(last));
    tcp_set_retryable(L);
    return 2;
  }
  return 1;
}

static int tcp_closed_err(lua_State *L, const char *what) {
  return err_push(L, "network", "closed", "%s on a closed connection", what);
}

/* conn:send(bytes) -> true | nil, err
 * Writes all of bytes within write_timeout (one deadline for the call). On
 * failure err.written tells how many bytes went out. */
static int tcp_send(lua_State *L) {
  tcp_conn *c = tcp_check(L);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  if (c->fd < 0) {
    tcp_closed_err(L, "send");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "written");
    return 2;
  }
  double deadline = tcp_now() + c->write_timeout;
  size_t done = 0;
  while (done < n) {
    ssize_t w = send(c->fd, p + done, n - done, MSG_NOSIGNAL);
    if (w > 0) {
      done += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int r = tcp_wait(c->fd, POLLOUT, deadline);
      if (r > 0) continue;
      if (r == 0)
        err_push(L, "timeout", "timeout", "send timed out after %gs (%zu of %zu bytes written)",
                 c->write_timeout, done, n);
      else
        err_push(L, "network", "send", "poll: %s", strerror(errno));
    } else {
      err_push(L, "network", "send", "send: %s", w < 0 ? strerror(errno) : "no progress");
    }
    lua_pushinteger(L, (lua_Integer)done);
    lua_setfield(L, -2, "written");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:receive([max], [timeout]) -> bytes | nil, err
 * Whatever is available: at least 1 byte, at most max (64 KiB by default),
 * waiting at most timeout seconds (the read_timeout by default; 0 polls
 * without waiting). */
static int tcp_receive(lua_State *L) {
  tcp_conn *c = tcp_check(L);
  lua_Integer maxi = luaL_optinteger(L, 2, (lua_Integer)TCP_DEFAULT_MAX);
  if (maxi < 1 || (size_t)maxi > TCP_MAX_MAX) return luaL_argerror(L, 2, "max out of range");
  double timeout = c->read_timeout;
  if (!lua_isnoneornil(L, 3)) {
    timeout = luaL_checknumber(L, 3);
    if (!(timeout >= 0)) return luaL_argerror(L, 3, "timeout must be >= 0");
  }
  if (c->fd < 0) return tcp_closed_err(L, "receive");
  buf_t *out = buf_scratch(&CORE_STATE(L)->out);
  /* The bytes land at offset 0, where buf_push takes them from. */
  unsigned char *dst = buf_reserve(L, out, (size_t)maxi);
  double deadline = tcp_now() + timeout;
  for (;;) {
    ssize_t r = recv(c->fd, dst, (size_t)maxi, 0);
    if (r > 0) {
      out->len = (size_t)r;
      buf_push(L, out, 0, (size_t)r, 0);
      return 1;
    }
    int e = errno;
    if (r < 0 && e == EINTR) continue;
    if (r < 0 && (e == EAGAIN || e == EWOULDBLOCK)) {
      int w = tcp_wait(c->fd, POLLIN, deadline);
      if (w > 0) continue;
      e = errno;
      buf_drop(out);
      if (w == 0) {
        err_push(L, "timeout", "timeout", "nothing received within %gs", timeout);
        tcp_set_retryable(L);
        return 2;
      }
      return err_push(L, "network", "recv", "poll: %s", strerror(e));
    }
    buf_drop(out);
    if (r == 0) return err_push(L, "network", "closed", "connection closed by peer");
    return err_push(L, "network", "recv", "recv: %s", strerror(e));
  }
}

/* conn:close() -> true (idempotent; also __gc and __close) */
static int tcp_close(lua_State *L) {
  tcp_conn *c = tcp_check(L);
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:fd() -> integer (-1 once closed) */
static int tcp_fd(lua_State *L) {
  lua_pushinteger(L, tcp_check(L)->fd);
  return 1;
}

/* conn:settimeouts{ read_timeout=, write_timeout= } -> conn */
static int tcp_settimeouts(lua_State *L) {
  tcp_conn *c = tcp_check(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  c->read_timeout = tcp_opt_seconds(L, 2, "read_timeout", c->read_timeout);
  c->write_timeout = tcp_opt_seconds(L, 2, "write_timeout", c->write_timeout);
  lua_settop(L, 1);
  return 1;
}

/* tostring(conn) */
static int tcp_tostring(lua_State *L) {
  tcp_conn *c = tcp_check(L);
  if (c->fd < 0) lua_pushliteral(L, "ksms.core.tcp_conn (closed)");
  else lua_pushfstring(L, "ksms.core.tcp_conn (fd %d)", c->fd);
  return 1;
}

static const luaL_Reg tcp_methods[] = {
  {"send", tcp_send},
  {"receive", tcp_receive},
  {"close", tcp_close},
  {"fd", tcp_fd},
  {"settimeouts", tcp_settimeouts},
  {NULL, NULL},
};

static const luaL_Reg tcp_fns[] = {
  {"tcp_connect", tcp_connect},
  {NULL, NULL},
};

void tcp_open(lua_State *L) {
  luaL_newmetatable(L, TCP_CONN_MT);
  lua_newtable(L);
  lua_pushvalue(L, 2);              /* the core_state upvalue */
  luaL_setfuncs(L, tcp_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, tcp_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, tcp_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, tcp_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  core_register(L, tcp_fns);
}
