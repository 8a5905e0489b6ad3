/*
 * resp.c - the Redis protocol (RESP2) codec (prefix resp_), sans-I/O.
 *
 * Encoding writes a RESP array of bulk strings (the only form a client
 * sends). Decoding is hiredis's reader: it is fed whatever bytes a socket
 * read and hands back whole replies, so one code path serves the core's TCP
 * client, LuaSocket and cosockets, like the OneShot frame codec (frame.c).
 *
 * The reader builds replies through our own object functions into a small
 * C tree (never calling Lua: a Lua memory error would longjmp through
 * hiredis), converted to Lua values once a reply is whole, then freed. The
 * tree and the buffered input are both counted against max_bytes, so a
 * hostile server announcing a huge array or string cannot make the reader
 * hold more than that. hiredis bounds the nesting depth itself (7 levels in
 * 0.14, its read-task stack).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/read.h>
#include "ksms.h"

#define RESP_READER_MT "ksms.core.resp_reader"
#define RESP_BOX_MT "ksms.core.resp_box"
#define RESP_DEFAULT_MAX ((size_t)64 << 20)

typedef struct resp_node {
  int type;                 /* REDIS_REPLY_* */
  long long integer;
  char *str;                /* string, status and error replies */
  size_t len;
  struct resp_node **items; /* arrays: children in order */
  size_t count, cap;
} resp_node;

typedef struct resp_reader {
  redisReader *r;
  size_t max_bytes;   /* limit on buffered input, and on one reply's tree */
  size_t tree_bytes;  /* what the reply being built holds */
  int over;           /* a callback refused an object over max_bytes */
  int bad_bulk;       /* a bulk string not followed by CRLF */
  int newline;        /* a '\n' arrived since hiredis last needed more */
  const char *fail_code;
  char fail_msg[160];
} resp_reader;

static void resp_node_free(void *p) {
  resp_node *n = p;
  if (!n) return;
  for (size_t i = 0; i < n->count; i++) resp_node_free(n->items[i]);
  free(n->items);
  free(n->str);
  free(n);
}

/* A new node attached to its parent array (hiredis leaves that to the
 * object functions); NULL makes hiredis fail the reader with OOM. */
static resp_node *resp_node_new(const redisReadTask *task, int type, size_t extra) {
  resp_reader *d = task->privdata;
  size_t cost = sizeof(resp_node) + extra;
  if (d->tree_bytes > d->max_bytes || cost > d->max_bytes - d->tree_bytes) {
    d->over = 1;
    return NULL;
  }
  resp_node *parent = task->parent ? task->parent->obj : NULL;
  if (parent && parent->count == parent->cap) {
    size_t cap = parent->cap ? parent->cap * 2 : 4;
    size_t grow = (cap - parent->cap) * sizeof(resp_node *);
    if (grow > d->max_bytes - d->tree_bytes - cost) {
      d->over = 1;
      return NULL;
    }
    resp_node **items = realloc(parent->items, cap * sizeof *items);
    if (!items) return NULL;
    parent->items = items;
    parent->cap = cap;
    d->tree_bytes += grow;
  }
  resp_node *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  n->type = type;
  d->tree_bytes += cost;
  if (parent) parent->items[parent->count++] = n;
  return n;
}

static void *resp_create_string(const redisReadTask *task, char *s, size_t len) {
  resp_reader *d = task->privdata;
  /* hiredis counts a bulk string's bytes and skips the two after it
   * unread; they are in its buffer, so we check they are CRLF. (Every
   * item then ends with '\n', which next() relies on.) */
  if (task->type == REDIS_REPLY_STRING && (s[len] != '\r' || s[len + 1] != '\n')) {
    d->bad_bulk = 1;
    return NULL;
  }
  if (len >= d->max_bytes) {
    d->over = 1;
    return NULL;
  }
  char *copy = malloc(len ? len : 1);
  if (!copy) return NULL;
  resp_node *n = resp_node_new(task, task->type, len);
  if (!n) {
    free(copy);
    return NULL;
  }
  memcpy(copy, s, len);
  n->str = copy;
  n->len = len;
  return n;
}

/* The announced count only says what to expect: children are appended
 * as they arrive, so "*2147483647" alone costs nothing. */
static void *resp_create_array(const redisReadTask *task, int elements) {
  (void)elements;
  return resp_node_new(task, REDIS_REPLY_ARRAY, 0);
}

static void *resp_create_integer(const redisReadTask *task, long long v) {
  resp_node *n = resp_node_new(task, REDIS_REPLY_INTEGER, 0);
  if (n) n->integer = v;
  return n;
}

static void *resp_create_nil(const redisReadTask *task) {
  return resp_node_new(task, REDIS_REPLY_NIL, 0);
}

static redisReplyObjectFunctions resp_functions = {
    resp_create_string, resp_create_array, resp_create_integer,
    resp_create_nil, resp_node_free,
};

/* Pushes the Lua value of n: strings for bulk and status replies, a
 * number for an integer, core.resp_null (a NULL light userdata) for a
 * nil reply, { err = "..." } for an error, { n = count, ... } for an
 * array. May raise a memory error: the caller still owns the tree. */
static void resp_push_node(lua_State *L, const resp_node *n) {
  switch (n->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      lua_pushlstring(L, n->str, n->len);
      break;
    case REDIS_REPLY_ERROR:
      lua_createtable(L, 0, 1);
      lua_pushlstring(L, n->str, n->len);
      lua_setfield(L, -2, "err");
      break;
    case REDIS_REPLY_INTEGER:
      lua_pushinteger(L, (lua_Integer)n->integer);
      break;
    case REDIS_REPLY_ARRAY:
      luaL_checkstack(L, 4, "resp: reply nested too deep");
      lua_createtable(L, n->count > 1 << 20 ? 1 << 20 : (int)n->count, 1);
      for (size_t i = 0; i < n->count; i++) {
        resp_push_node(L, n->items[i]);
        lua_rawseti(L, -2, (lua_Integer)(i + 1));
      }
      lua_pushinteger(L, (lua_Integer)n->count);
      lua_setfield(L, -2, "n");
      break;
    default:
      lua_pushlightuserdata(L, NULL);
      break;
  }
}

/* Appends the bulk string of s (n bytes) to out. */
static void resp_put_bulk(lua_State *L, buf_t *out, const char *s, size_t n) {
  char head[32];
  int hl = snprintf(head, sizeof head, "$%zu\r\n", n);
  buf_append(L, out, head, (size_t)hl);
  buf_append(L, out, s, n);
  buf_append(L, out, "\r\n", 2);
}

/* core.resp_encode({ "SET", "k", "v" }) -> "*3\r\n$3\r\nSET\r\n..."
 * Every element a string or a number (integers as digits, other numbers
 * with 17 significant digits); an empty list or another type raises. */
static int resp_encode(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t argc = (size_t)lua_rawlen(L, 1);
  luaL_argcheck(L, argc > 0, 1, "resp_encode: the command needs at least one argument");
  for (size_t i = 1; i <= argc; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i);
    int t = lua_type(L, -1);
    lua_pop(L, 1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      return luaL_error(L, "resp_encode: argument %d is a %s (strings and numbers only)",
                        (int)i, lua_typename(L, t));
  }
  buf_t *out = buf_owned(L); /* freed by its __gc if a raise cuts us short */
  char head[32];
  int hl = snprintf(head, sizeof head, "*%zu\r\n", argc);
  buf_append(L, out, head, (size_t)hl);
  for (size_t i = 1; i <= argc; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      char num[64];
      int nl;
      if (lua_isinteger(L, -1))
        nl = snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -1));
      else
        nl = snprintf(num, sizeof num, "%.17g", (double)lua_tonumber(L, -1));
      resp_put_bulk(L, out, num, (size_t)nl);
    } else {
      size_t n;
      const char *s = lua_tolstring(L, -1, &n);
      resp_put_bulk(L, out, s, n);
    }
    lua_pop(L, 1);
  }
  lua_pushlstring(L, (const char *)out->data, out->len);
  buf_free(out);
  return 1;
}

static int resp_fail(lua_State *L, resp_reader *d, const char *code, const char *fmt,
                     const char *detail) {
  d->fail_code = code;
  snprintf(d->fail_msg, sizeof d->fail_msg, fmt, detail);
  /* Give the buffered bytes back now; the stream is dead. */
  if (d->r) {
    redisReaderFree(d->r);
    d->r = NULL;
  }
  return err_push(L, "protocol", code, "%s", d->fail_msg);
}

static int resp_failed_again(lua_State *L, resp_reader *d) {
  return err_push(L, "protocol", d->fail_code, "%s (reader already failed)", d->fail_msg);
}

/* reader:feed(bytes) -> true | nil, err
 * err (category "protocol", code "too_large") when the bytes waiting for
 * a whole reply would pass max_bytes; the reader is then failed. */
static int resp_reader_feed(lua_State *L) {
  resp_reader *d = luaL_checkudata(L, 1, RESP_READER_MT);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (d->fail_code) return resp_failed_again(L, d);
  if (!d->r) return luaL_error(L, "resp reader: used after close");
  size_t held = d->r->len - d->r->pos;
  if (n > d->max_bytes || held > d->max_bytes - n) {
    char detail[80];
    snprintf(detail, sizeof detail, "%zu held + %zu fed > %zu", held, n, d->max_bytes);
    return resp_fail(L, d, "too_large", "reply over max_bytes (%s)", detail);
  }
  if (n == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (redisReaderFeed(d->r, s, n) != REDIS_OK)
    return resp_fail(L, d, "no_memory", "resp reader: %s", "out of memory");
  if (memchr(s, '\n', n)) d->newline = 1;
  lua_pushboolean(L, 1);
  return 1;
}

/* reader:next() -> reply | nil (needs more bytes) | nil, err
 * err is a protocol error (code "bad_reply" for bytes that are not RESP,
 * "too_large" for a reply over max_bytes); once failed, always failed. A
 * server error reply is a value ({ err = "ERR ..." }), not a failure. */
static int resp_reader_next(lua_State *L) {
  resp_reader *d = luaL_checkudata(L, 1, RESP_READER_MT);
  if (d->fail_code) return resp_failed_again(L, d);
  if (!d->r) return luaL_error(L, "resp reader: used after close");
  /* Every RESP item ends with CRLF: without a new '\n' nothing more can
   * be whole, and skipping the call keeps a long line fed in small
   * pieces from being rescanned each time (linear, not quadratic). So a
   * malformed stream is reported once a '\n' arrives, not before. */
  if (!d->newline) return 0;
  /* The box comes first: once hiredis hands a tree over, nothing may
   * raise before something owns it. A memory error while it becomes Lua
   * values leaves it to the box's __gc. */
  resp_node **box = lua_newuserdata(L, sizeof *box);
  *box = NULL;
  luaL_setmetatable(L, RESP_BOX_MT);
  void *reply = NULL;
  if (redisReaderGetReply(d->r, &reply) != REDIS_OK) {
    if (d->over) return resp_fail(L, d, "too_large", "reply over max_bytes (%s)", "tree");
    if (d->bad_bulk)
      return resp_fail(L, d, "bad_reply", "not a Redis reply: %s", "bulk string not ended by CRLF");
    return resp_fail(L, d, "bad_reply", "not a Redis reply: %s", d->r->errstr);
  }
  if (!reply) {
    d->newline = 0;
    return 0;
  }
  d->tree_bytes = 0;
  *box = reply;
  resp_push_node(L, reply);
  resp_node_free(reply);
  *box = NULL;
  return 1;
}

static int resp_box_gc(lua_State *L) {
  resp_node **box = lua_touserdata(L, 1);
  if (box && *box) {
    resp_node_free(*box);
    *box = NULL;
  }
  return 0;
}

/* reader:buffered() -> bytes the reader holds unparsed (of a partial
 * reply; hiredis may have taken its first bytes already) */
static int resp_reader_buffered(lua_State *L) {
  resp_reader *d = luaL_checkudata(L, 1, RESP_READER_MT);
  lua_pushinteger(L, d->r ? (lua_Integer)(d->r->len - d->r->pos) : 0);
  return 1;
}

/* reader:close(): frees what it holds; also __gc and __close; idempotent. */
static int resp_reader_close(lua_State *L) {
  resp_reader *d = luaL_checkudata(L, 1, RESP_READER_MT);
  if (d->r) {
    redisReaderFree(d->r);
    d->r = NULL;
  }
  return 0;
}

/* core.resp_reader([max_bytes]) -> reader
 * max_bytes (default 64 MiB) bounds the bytes buffered for one reply and
 * the memory of the reply being built. */
static int resp_reader_new(lua_State *L) {
  size_t max_bytes = RESP_DEFAULT_MAX;
  if (!lua_isnoneornil(L, 1)) {
    if (!lua_isinteger(L, 1) || lua_tointeger(L, 1) <= 0)
      return luaL_argerror(L, 1, "resp_reader: max_bytes must be a positive integer");
    max_bytes = (size_t)lua_tointeger(L, 1);
  }
  resp_reader *d = lua_newuserdata(L, sizeof *d);
  memset(d, 0, sizeof *d);
  d->max_bytes = max_bytes;
  luaL_setmetatable(L, RESP_READER_MT);
  d->r = redisReaderCreateWithFunctions(&resp_functions);
  if (!d->r) return luaL_error(L, "resp_reader: out of memory");
  d->r->privdata = d;
  /* The reader gives its buffer back once empty past 16 KiB (its default). */
  return 1;
}

void resp_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"feed", resp_reader_feed},
      {"next", resp_reader_next},
      {"buffered", resp_reader_buffered},
      {"close", resp_reader_close},
      {NULL, NULL},
  };
  static const luaL_Reg fns[] = {
      {"resp_encode", resp_encode},
      {"resp_reader", resp_reader_new},
      {NULL, NULL},
  };
  luaL_newmetatable(L, RESP_READER_MT);
  lua_pushvalue(L, 2);
  luaL_setfuncs(L, methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, resp_reader_close);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__gc");
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  luaL_newmetatable(L, RESP_BOX_MT); /* next()'s tree box */
  lua_pushcfunction(L, resp_box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, 1, "resp_null");
  core_register(L, fns);
}
