/*
 * fuzz_frame - the OneShot frame decoder (core.frame_decoder, :feed) on a
 * byte stream cut into random pieces.
 *
 * Input: byte 0 picks max_frame, byte 1 max_payload, byte 2 seeds the
 * piece sizes, byte 3 the mode; the rest is the stream (mode even) or a
 * list of records the harness turns into a stream (mode odd, so most
 * inputs hold real frames): [kind][len][len bytes], kind 0 a frame of the
 * bytes compressed, 1 raw bytes, 2 a frame whose header length is off by a
 * little, 3 a frame with a header in another case and blanks.
 *
 * Invariants: the stream fed whole and fed in pieces gives the same
 * payloads and the same failure; the payloads are what the reference
 * (below, with zlib's own inflate) reads from the stream; a failure is a
 * protocol error with the reference's code, and the decoder stays failed;
 * buffered() is what the reference leaves unread.
 */
#include <ctype.h>
#include "ref_zlib.h"

#define FRAME_HEADER_MAX 64
static const char fz_name[] = "content-length:";

typedef struct fz_buf {
  uint8_t *p;
  size_t n, cap;
} fz_buf;

static void fz_put(fz_buf *b, const void *p, size_t n) {
  if (n == 0) return;
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
}

/* The reference header parser: 1 header read, 0 need more, -1 bad. */
static int fz_ref_header(const uint8_t *p, size_t n, size_t *body, size_t *hlen) {
  size_t limit = n < FRAME_HEADER_MAX ? n : FRAME_HEADER_MAX, i;
  for (i = 0; i < limit && i < 15; i++)
    if (tolower(p[i]) != fz_name[i]) return -1;
  if (i < 15) return 0;
  while (i < limit && (p[i] == ' ' || p[i] == '\t')) i++;
  size_t digits = 0;
  unsigned long long v = 0;
  while (i < limit && isdigit(p[i])) {
    if (++digits > 10) return -1;
    v = v * 10 + (p[i++] - '0');
  }
  while (i < limit && (p[i] == ' ' || p[i] == '\t')) i++;
  if (i == limit) return limit == FRAME_HEADER_MAX ? -1 : 0;
  if (!digits || p[i] != '\r') return -1;
  if (i + 1 == limit) return limit == FRAME_HEADER_MAX ? -1 : 0;
  if (p[i + 1] != '\n' || v == 0) return -1;
  *body = (size_t)v;
  *hlen = i + 2;
  return 1;
}

typedef struct fz_result {
  size_t count;
  uint8_t **payload;
  size_t *len;
  const char *fail;   /* error code, NULL when the stream is fine so far */
  char fail_buf[32];  /* a copy of the decoder's code (the Lua string goes) */
  size_t left;        /* bytes waiting for the rest of a frame */
} fz_result;

static void fz_add(fz_result *r, const uint8_t *p, size_t n) {
  r->payload = realloc(r->payload, (r->count + 1) * sizeof *r->payload);
  r->len = realloc(r->len, (r->count + 1) * sizeof *r->len);
  if (!r->payload || !r->len) abort();
  r->payload[r->count] = malloc(n ? n : 1);
  if (n) memcpy(r->payload[r->count], p, n);
  r->len[r->count++] = n;
}

static void fz_free_result(fz_result *r) {
  for (size_t i = 0; i < r->count; i++) free(r->payload[i]);
  free(r->payload);
  free(r->len);
}

static void fz_reference(const uint8_t *s, size_t n, size_t max_frame, size_t max_payload,
                         fz_result *r) {
  size_t pos = 0;
  memset(r, 0, sizeof *r);
  while (pos < n) {
    size_t body = 0, hlen = 0;
    int h = fz_ref_header(s + pos, n - pos, &body, &hlen);
    if (h < 0) { r->fail = "bad_header"; return; }
    if (h == 0) break;
    if (body > max_frame) { r->fail = "too_large"; return; }
    if (n - pos < hlen + body) break;
    uint8_t *out;
    size_t out_n;
    const char *code = fz_ref_inflate(s + pos + hlen, body, max_payload, &out, &out_n);
    if (code) { r->fail = code; return; }
    fz_add(r, out, out_n);
    free(out);
    pos += hlen + body;
  }
  r->left = n - pos;
}

/* Feeds s to a new decoder in pieces (sizes from seed; seed 0: whole). */
static void fz_decode(lua_State *L, const uint8_t *s, size_t n, size_t max_frame,
                      size_t max_payload, unsigned seed, fz_result *r) {
  memset(r, 0, sizeof *r);
  fz_core_fn(L, "frame_decoder");
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)max_frame);
  lua_setfield(L, -2, "max_frame");
  lua_pushinteger(L, (lua_Integer)max_payload);
  lua_setfield(L, -2, "max_payload");
  fz_call(L, 1, 1, "frame_decoder");
  int dec = lua_gettop(L);
  uint32_t rnd = seed * 2654435761u + 1;
  size_t pos = 0;
  do {
    size_t piece = n - pos;
    if (seed) {
      rnd = rnd * 1103515245u + 12345u;
      size_t k = (rnd >> 16) % 4 == 0 ? (rnd >> 8) % 300 : (rnd >> 8) % 8;
      if (k < piece) piece = k;
    }
    lua_getfield(L, dec, "feed");
    lua_pushvalue(L, dec);
    lua_pushlstring(L, (const char *)s + pos, piece);
    fz_call(L, 2, 2, "decoder:feed");
    pos += piece;
    if (lua_istable(L, -2)) {
      size_t k = lua_rawlen(L, -2);
      for (size_t i = 1; i <= k; i++) {
        lua_rawgeti(L, -2, (lua_Integer)i);
        size_t pl;
        const char *p = lua_tolstring(L, -1, &pl);
        FZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "feed: payload %zu is not a string", i);
        fz_add(r, (const uint8_t *)p, pl);
        lua_pop(L, 1);
      }
    } else {
      FZ_CHECK(lua_isnil(L, -2), "feed returned a %s", luaL_typename(L, -2));
      FZ_CHECK(!lua_isnil(L, -1), "feed returned nil without an error");
    }
    if (!lua_isnil(L, -1)) {
      snprintf(r->fail_buf, sizeof r->fail_buf, "%s", fz_check_error(L, -1, "protocol", "decoder:feed"));
      r->fail = r->fail_buf;
      /* once failed, always failed, with the same code */
      lua_getfield(L, dec, "feed");
      lua_pushvalue(L, dec);
      lua_pushliteral(L, "Content-Length:1\r\nx");
      fz_call(L, 2, 2, "decoder:feed after a failure");
      FZ_CHECK(lua_isnil(L, -2), "decoder:feed works again after a failure");
      const char *again = fz_check_error(L, -1, "protocol", "decoder:feed after a failure");
      FZ_CHECK(strcmp(again, r->fail) == 0, "failed decoder now says %s, first %s", again, r->fail);
      lua_pop(L, 2);
      lua_getfield(L, dec, "failed");
      lua_pushvalue(L, dec);
      fz_call(L, 1, 1, "decoder:failed");
      fz_check_error(L, -1, "protocol", "decoder:failed");
      lua_pop(L, 3);
      break;
    }
    lua_pop(L, 2);
  } while (pos < n);
  if (!r->fail) {
    lua_getfield(L, dec, "buffered");
    lua_pushvalue(L, dec);
    fz_call(L, 1, 1, "decoder:buffered");
    r->left = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_getfield(L, dec, "close");
  lua_pushvalue(L, dec);
  fz_call(L, 1, 0, "decoder:close");
  lua_settop(L, dec - 1);
}

static void fz_same(const fz_result *a, const fz_result *b, const char *what) {
  size_t k = a->count < b->count ? a->count : b->count;
  for (size_t i = 0; i < k; i++)
    FZ_CHECK(a->len[i] == b->len[i] && memcmp(a->payload[i], b->payload[i], a->len[i]) == 0,
             "%s: payload %zu differs", what, i + 1);
  FZ_CHECK(a->count == b->count, "%s: %zu payloads vs %zu", what, a->count, b->count);
  FZ_CHECK((a->fail == NULL) == (b->fail == NULL) && (!a->fail || !strcmp(a->fail, b->fail)),
           "%s: failure %s vs %s", what, a->fail ? a->fail : "none", b->fail ? b->fail : "none");
  FZ_CHECK(a->fail || a->left == b->left, "%s: %zu bytes left vs %zu", what, a->left, b->left);
}

/* Mode odd: records to a stream of mostly real frames. */
static void fz_build(fz_in *in, fz_buf *out) {
  while (in->n >= 2) {
    unsigned kind = fz_byte(in) % 4;
    size_t n;
    const uint8_t *p = fz_str(in, &n);
    if (kind == 1) {
      fz_put(out, p, n);
      continue;
    }
    size_t cn;
    uint8_t *c = fz_ref_deflate(p, n, 9, &cn);
    char head[80];
    long announced = (long)cn;
    if (kind == 2) announced += (long)(n ? p[0] % 5 : 0) - 2;
    int hl = kind == 3 ? snprintf(head, sizeof head, "CONTENT-length: \t%ld \r\n", announced)
                       : snprintf(head, sizeof head, "Content-Length:%ld\r\n", announced);
    fz_put(out, head, (size_t)hl);
    fz_put(out, c, cn);
    free(c);
  }
}

static void fz_one(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  fz_in in = { data, size };
  unsigned b0 = fz_byte(&in), b1 = fz_byte(&in), seed = fz_byte(&in), mode = fz_byte(&in);
  size_t max_frame = b0 & 0x80 ? (size_t)1 << 20 : 1 + (size_t)b0 * 4;
  size_t max_payload = b1 & 0x80 ? (size_t)1 << 20 : (size_t)b1 * 8 + 1;
  fz_buf stream = { malloc(64), 0, 64 };
  if (mode & 1) fz_build(&in, &stream);
  else fz_put(&stream, in.p, in.n);

  fz_result ref, whole, pieces;
  fz_reference(stream.p, stream.n, max_frame, max_payload, &ref);
  fz_decode(L, stream.p, stream.n, max_frame, max_payload, 0, &whole);
  fz_decode(L, stream.p, stream.n, max_frame, max_payload, seed | 1, &pieces);
  fz_same(&ref, &whole, "fed whole vs reference");
  fz_same(&whole, &pieces, "fed in pieces vs fed whole");
  fz_free_result(&ref);
  fz_free_result(&whole);
  fz_free_result(&pieces);
  free(stream.p);
  fz_done(L);
  return;
}
