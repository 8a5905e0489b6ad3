/*
 * frame.c - the OneShot frame codec (prefix frame_), sans-I/O.
 *
 * A frame is the ASCII line "Content-Length:N" CRLF followed by N bytes of
 * zlib (RFC 1950) data holding a UTF-8 JSON message. The encoder returns the
 * whole frame; the decoder is fed whatever bytes a transport read (one byte,
 * half a frame, ten frames) and hands back every complete payload. It never
 * touches a socket, so the same code serves the core's TCP client
 * (ksms.oneshot.session), OpenResty cosockets (ksms.ngx) or any other socket.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "ksms.h"

#define FRAME_DECODER_MT "ksms.core.frame_decoder"
#define FRAME_HEADER_MAX 64   /* "Content-Length:" + digits + CRLF, with slack */
#define FRAME_DEFAULT_MAX ((size_t)1 << 20)
#define FRAME_NAME "content-length:"
#define FRAME_NAME_LEN (sizeof FRAME_NAME - 1)

typedef struct frame_decoder {
  buf_t pending;        /* bytes received but not yet a whole frame */
  size_t max_frame;     /* largest compressed body accepted */
  size_t max_payload;   /* largest decompressed payload accepted */
  size_t body_len;      /* length from the current header, 0 = none yet */
  size_t header_len;    /* bytes of the current header line incl. CRLF */
  const char *fail_code;/* set once the stream is known bad */
  char fail_msg[96];
} frame_decoder;

int frame_push(lua_State *L, const unsigned char *payload, size_t n,
               int level) {
  core_state *st = CORE_STATE(L);
  buf_t *out = buf_scratch(&st->out);
  /* Compress after a gap, then write the header right before the data so
   * the frame is pushed without another copy. */
  buf_reserve(L, out, FRAME_HEADER_MAX);
  out->len = FRAME_HEADER_MAX;
  const char *msg = NULL;
  const char *code = zl_deflate(L, st->zlib, out, payload, n, level, &msg);
  if (code) {
    buf_drop(out);
    return err_push(L, "invalid_input", code, "%s", msg);
  }
  size_t body = out->len - FRAME_HEADER_MAX;
  char header[FRAME_HEADER_MAX];
  int hlen = snprintf(header, sizeof header, "Content-Length:%zu\r\n", body);
  unsigned char *start = out->data + FRAME_HEADER_MAX - hlen;
  memcpy(start, header, (size_t)hlen);
  buf_push(L, out, (size_t)(start - out->data), (size_t)hlen + body, 0);
  return 1;
}

/* core.frame_encode(payload [, level]) -> "Content-Length:N\r\n" .. zlib */
static int frame_encode(lua_State *L) {
  size_t n;
  const char *payload = luaL_checklstring(L, 1, &n);
  int level = (int)luaL_optinteger(L, 2, 9);
  luaL_argcheck(L, level >= -1 && level <= 9, 2, "level must be -1..9");
  return frame_push(L, (const unsigned char *)payload, n, level);
}

static int frame_fail(lua_State *L, frame_decoder *d, const char *code,
                      const char *fmt, const char *detail) {
  d->fail_code = code;
  snprintf(d->fail_msg, sizeof d->fail_msg, fmt, detail);
  buf_free(&d->pending);
  return err_push(L, "protocol", code, "%s", d->fail_msg);
}

/* Parses a header line at p (n bytes available). Returns 1 when a whole
 * header was read (d->body_len, d->header_len set), 0 when more bytes are
 * needed, -1 on a malformed header (message in *why). */
static int frame_parse_header(frame_decoder *d, const unsigned char *p,
                              size_t n, const char **why) {
  size_t limit = n < FRAME_HEADER_MAX ? n : FRAME_HEADER_MAX;
  size_t i;
  /* The name must be a prefix match from the first byte on, so a stray
   * byte is caught at once rather than after 64 bytes. */
  for (i = 0; i < limit && i < FRAME_NAME_LEN; i++) {
    if (tolower(p[i]) != FRAME_NAME[i]) {
      *why = "expected 'Content-Length:'";
      return -1;
    }
  }
  if (i < FRAME_NAME_LEN) return 0;
  while (i < limit && (p[i] == ' ' || p[i] == '\t')) i++;
  size_t digits = 0;
  uint64_t value = 0;
  while (i < limit && p[i] >= '0' && p[i] <= '9') {
    if (++digits > 10) {
      *why = "length has too many digits";
      return -1;
    }
    value = value * 10 + (uint64_t)(p[i] - '0');
    i++;
  }
  while (i < limit && (p[i] == ' ' || p[i] == '\t')) i++;
  if (i == limit) {
    if (limit == FRAME_HEADER_MAX) {
      *why = "header line too long";
      return -1;
    }
    return 0;
  }
  if (digits == 0) {
    *why = "missing length";
    return -1;
  }
  if (p[i] != '\r') {
    *why = "unexpected byte in header";
    return -1;
  }
  if (i + 1 == limit) {
    if (limit == FRAME_HEADER_MAX) {
      *why = "header line too long";
      return -1;
    }
    return 0;
  }
  if (p[i + 1] != '\n') {
    *why = "header not ended by CRLF";
    return -1;
  }
  if (value == 0) {
    *why = "zero length";
    return -1;
  }
  d->body_len = (size_t)value;
  d->header_len = i + 2;
  return 1;
}

/* Consumes whole frames from p..p+n, appending each payload to the result
 * table at the top of the stack. Returns bytes consumed, or (size_t)-1
 * after pushing nil, err. */
static size_t frame_consume(lua_State *L, frame_decoder *d,
                            const unsigned char *p, size_t n, int *count) {
  core_state *st = CORE_STATE(L);
  size_t used = 0;
  for (;;) {
    const unsigned char *at = p + used;
    size_t left = n - used;
    if (d->body_len == 0) {
      const char *why = NULL;
      int r = frame_parse_header(d, at, left, &why);
      if (r == 0) return used;
      if (r < 0) {
        frame_fail(L, d, "bad_header", "malformed frame header: %s", why);
        return (size_t)-1;
      }
      if (d->body_len > d->max_frame) {
        char detail[48];
        snprintf(detail, sizeof detail, "%zu > %zu", d->body_len, d->max_frame);
        frame_fail(L, d, "too_large", "frame length over the limit (%s)", detail);
        return (size_t)-1;
      }
    }
    if (left < d->header_len + d->body_len) return used;
    const char *msg = NULL;
    buf_t *out = buf_scratch(&st->out);
    const char *code = zl_inflate(L, st->zlib, out, at + d->header_len,
                                  d->body_len, d->max_payload, &msg);
    if (code) {
      buf_drop(out); /* what inflated before the failure is no one's */
      frame_fail(L, d, code, "frame payload: %s", msg);
      return (size_t)-1;
    }
    buf_push(L, out, 0, out->len, 0);
    lua_rawseti(L, -2, ++*count);
    used += d->header_len + d->body_len;
    d->body_len = 0;
    d->header_len = 0;
  }
}

/* Stack: list, nil, err. Returns nil, err or, when the list holds payloads
 * decoded before the failure, list, err. */
static int frame_failed_result(lua_State *L, int count) {
  if (count == 0) return 2;
  lua_remove(L, -2);
  return 2;
}

/* decoder:feed(chunk) -> { payload, ... } (maybe empty) | nil, err
 * When a bad frame follows good ones in the same chunk, the good payloads
 * are not thrown away: the call returns { payload, ... }, err. Once it has
 * failed, every later call returns nil, err: the stream can't be
 * resynchronised, the connection must be dropped. */
static int frame_decoder_feed(lua_State *L) {
  frame_decoder *d = luaL_checkudata(L, 1, FRAME_DECODER_MT);
  size_t n;
  const unsigned char *chunk = (const unsigned char *)luaL_checklstring(L, 2, &n);
  if (d->fail_code)
    return err_push(L, "protocol", d->fail_code, "%s (decoder already failed)",
                    d->fail_msg);
  lua_newtable(L);
  int count = 0;
  size_t used;
  if (d->pending.len == 0) {
    /* Fast path: parse the chunk in place, keep only the leftover. */
    used = frame_consume(L, d, chunk, n, &count);
    if (used == (size_t)-1) return frame_failed_result(L, count);
    buf_append(L, &d->pending, chunk + used, n - used);
  } else {
    buf_append(L, &d->pending, chunk, n);
    used = frame_consume(L, d, d->pending.data, d->pending.len, &count);
    if (used == (size_t)-1) return frame_failed_result(L, count);
    buf_consume(&d->pending, used);
  }
  /* Drop a large buffer once a big frame has passed. */
  if (d->pending.len == 0) buf_shrink(&d->pending, 4096);
  return 1;
}

/* decoder:buffered() -> bytes held waiting for the rest of a frame */
static int frame_decoder_buffered(lua_State *L) {
  frame_decoder *d = luaL_checkudata(L, 1, FRAME_DECODER_MT);
  lua_pushinteger(L, (lua_Integer)d->pending.len);
  return 1;
}

/* decoder:failed() -> nil | err: the error that stopped the stream */
static int frame_decoder_failed(lua_State *L) {
  frame_decoder *d = luaL_checkudata(L, 1, FRAME_DECODER_MT);
  if (!d->fail_code) return 0;
  err_push(L, "protocol", d->fail_code, "%s", d->fail_msg);
  return 1;
}

/* decoder:close(): frees the buffered bytes; also __gc and __close. */
static int frame_decoder_close(lua_State *L) {
  frame_decoder *d = luaL_checkudata(L, 1, FRAME_DECODER_MT);
  buf_free(&d->pending);
  return 0;
}

static size_t frame_opt_size(lua_State *L, int t, const char *key, size_t dflt) {
  lua_getfield(L, t, key);
  size_t v = dflt;
  if (!lua_isnil(L, -1)) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0)
      luaL_error(L, "frame_decoder: %s must be a positive integer", key);
    v = (size_t)lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* core.frame_decoder{ max_frame = 1 MiB, max_payload = 1 MiB } -> decoder
 * max_frame limits the compressed length a header may announce;
 * max_payload limits what one frame may decompress to. */
static int frame_decoder_new(lua_State *L) {
  size_t max_frame = FRAME_DEFAULT_MAX, max_payload = FRAME_DEFAULT_MAX;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    max_frame = frame_opt_size(L, 1, "max_frame", FRAME_DEFAULT_MAX);
    max_payload = frame_opt_size(L, 1, "max_payload", FRAME_DEFAULT_MAX);
  }
  frame_decoder *d = lua_newuserdata(L, sizeof *d);
  memset(d, 0, sizeof *d);
  d->max_frame = max_frame;
  d->max_payload = max_payload;
  luaL_setmetatable(L, FRAME_DECODER_MT);
  return 1;
}

void frame_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"feed", frame_decoder_feed},
      {"buffered", frame_decoder_buffered},
      {"failed", frame_decoder_failed},
      {"close", frame_decoder_close},
      {NULL, NULL},
  };
  static const luaL_Reg fns[] = {
      {"frame_encode", frame_encode},
      {"frame_decoder", frame_decoder_new},
      {NULL, NULL},
  };
  luaL_newmetatable(L, FRAME_DECODER_MT);
  lua_pushvalue(L, 2);
  luaL_setfuncs(L, methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, frame_decoder_close, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__gc");
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  core_register(L, fns);
}
