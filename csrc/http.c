/*
 * http.c - the HTTP/1.1 transport over libcurl (prefix http_).
 *
 * core.http_client(opts) makes a client: one curl multi handle whose
 * connection cache (and DNS cache) every transfer of the client shares, so
 * client:request and client:request_many reuse the same keep-alive
 * connections. Both go through the same loop (curl_multi_perform and
 * curl_multi_poll); a single request is a batch of one.
 *
 * The request is not written here. ksms.transport.http1.prepare (Lua, the
 * one request writer of both transports) checks it and writes its request
 * line, headers and body; this file hands libcurl that exact header list
 * (every header of libcurl's own turned off: Expect, Accept, User-Agent,
 * the form Content-Type), the prepared request target
 * (CURLOPT_REQUEST_TARGET) and the body, so what libcurl writes is
 * p.head .. p.body. What stays here is what only libcurl's side can do:
 * connections and their reuse, TLS, timeouts, the never-resend guard, the
 * response limits, request_many's concurrency.
 *
 * Each call runs in three phases so a Lua error can never leave libcurl
 * half way:
 *   1. prepare: every request goes through http1.prepare (programmer
 *      errors raise there, before anything is sent) and the prepared
 *      request is loaded into a "batch" userdata (its __gc frees whatever a
 *      raise left behind).
 *   2. run: no Lua API call at all; easy handles are made, attached, run and
 *      detached. Callbacks only touch C buffers and never raise.
 *   3. results: every easy handle is gone; response tables and error
 *      objects are pushed from the batch's buffers.
 *
 * Never resend on our own. libcurl retries a request once when a reused
 * keep-alive connection turns out dead before any response byte
 * (Curl_retry_request). A server that read the request and then died may
 * have acted on it, so for anything but a bodyless GET or HEAD that retry
 * must not happen: CURLOPT_PREREQFUNCTION runs right before each attempt to
 * send the request, and a second attempt aborts the transfer, which ends as
 * nil, err with maybe_sent = true. A bodyless GET or HEAD may be retried by
 * libcurl once on a fresh connection; that is harmless.
 *
 * Bodies go out with CURLOPT_POSTFIELDS from the prepared string, so a
 * small request leaves in one write (a read callback would send headers
 * and body separately, costing a syscall and a wakeup at the server).
 *
 * The pre-request callback is also how maybe_sent is known: until it has
 * run, no byte of the request can have reached the server (DNS, connect,
 * TLS handshake, connect timeout).
 */
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "ksms.h"

#define HTTP_CLIENT_MT "ksms.core.http_client"
#define HTTP_BATCH_MT "ksms.core.http_batch"
#define HTTP_RESPONSE_MT "ksms.core.http_response"

#define HTTP_DEFAULT_CONNECT_MS 10000L
#define HTTP_DEFAULT_TIMEOUT_MS 30000L
#define HTTP_DEFAULT_MAX_RESPONSE ((size_t)4 << 20)
#define HTTP_DEFAULT_MAX_CONNECTIONS 16L
#define HTTP_DEFAULT_CONCURRENCY 8
#define HTTP_MAX_HEADER_BYTES ((size_t)256 << 10) /* every response header block, 1xx too */
#define HTTP_MAX_INTERIM 32                         /* interim (1xx) responses before the final one */
#define HTTP_STR_(v) #v
#define HTTP_STR(v) HTTP_STR_(v)
#define HTTP_METHOD_MAX 20
#define HTTP_BOUNDARY_MAX 70                        /* RFC 2046 */
#define HTTP_BOUNDARY_RANDOM 32                     /* random alphanumerics */
#define HTTP_POLL_MS 1000

static const char http_alnum[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#define HTTP_IDLE_MAX 64     /* easy handles kept for reuse */

typedef struct http_client {
  CURLM *multi;              /* NULL once closed */
  CURL *idle[HTTP_IDLE_MAX]; /* finished easy handles, reset and reused:
                              * making one costs more than a local request */
  int n_idle;
  long connect_timeout_ms;
  long timeout_ms;
  size_t max_response;
  int insecure;              /* TLS peer and host verification off */
  char *ca_file;
  char *proxy;               /* "" = no proxy, whatever the environment */
  int defaults_ref;          /* { user_agent =, who = "ksms.core" } for prepare */
  int busy;                  /* inside request_many's callbacks: no re-entry, no close */
} http_client;

typedef struct http_xfer {
  CURL *easy;                /* only during the run phase */
  /* the request, copied out of Lua */
  char *url;
  char *target;              /* the request line's target, as prepared */
  char method[HTTP_METHOD_MAX + 1];
  int has_body;              /* post is sent with CURLOPT_POSTFIELDS */
  const char *post;          /* the prepared body, owned by the prepared table */
  size_t post_len;
  int safe;                  /* bodyless GET/HEAD: a libcurl retry is fine */
  int head;
  buf_t body;                /* core.multipart_body's output */
  struct curl_slist *headers;
  long connect_timeout_ms, timeout_ms;
  const char *pre_code;      /* set when it failed before sending (file) */
  int pre_err;               /* the prepared request carries its error (p.err) */
  int cancelled;             /* on_start returned false: never sent */
  int pushed;                /* its outcome is in the results table already */
  /* progress, written by the callbacks */
  int attempts;              /* pre-request callback calls */
  int resend_refused;
  int too_large;
  int out_of_memory;
  int body_started;          /* response body bytes seen: later headers are trailers */
  int interim;               /* interim (1xx) responses seen */
  int too_many_interim;
  long hdr_status;           /* status of the response whose headers are coming */
  size_t hdr_total;          /* header bytes of every response so far */
  const char *bad_framing;   /* why the final response's framing was refused */
  size_t max_response;
  buf_t resp;
  buf_t hdrs;                /* header lines of the latest response */
  /* outcome */
  int done;
  CURLcode result;
  long status;
  char errbuf[CURL_ERROR_SIZE];
} http_xfer;

typedef struct http_batch {
  int n;
  http_xfer x[1];            /* n of them */
} http_batch;

/* ---- small helpers that never raise (safe inside libcurl callbacks) ---- */

/* Makes room for n more bytes; NULL when memory runs out. */
static unsigned char *http_room(buf_t *b, size_t n) {
  if (b->cap - b->len >= n) return b->data + b->len;
  size_t need = b->len + n;
  if (need < n) return NULL;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < need) {
    if (cap > ((size_t)-1) / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
  unsigned char *p = realloc(b->data, cap);
  if (!p) return NULL;
  b->data = p;
  b->cap = cap;
  return p + b->len;
}

static int http_add(buf_t *b, const void *p, size_t n) {
  if (n == 0) return 0;
  unsigned char *to = http_room(b, n);
  if (!to) return -1;
  memcpy(to, p, n);
  b->len += n;
  return 0;
}

static void http_xfer_free(http_xfer *x) {
  if (x->easy) {
    curl_easy_cleanup(x->easy);
    x->easy = NULL;
  }
  free(x->url);
  x->url = NULL;
  free(x->target);
  x->target = NULL;
  if (x->headers) {
    curl_slist_free_all(x->headers);
    x->headers = NULL;
  }
  if (x->body.data) explicit_bzero(x->body.data, x->body.len);
  buf_free(&x->body);
  buf_free(&x->resp);
  buf_free(&x->hdrs);
}

static int http_batch_gc(lua_State *L) {
  http_batch *b = luaL_checkudata(L, 1, HTTP_BATCH_MT);
  for (int i = 0; i < b->n; i++) http_xfer_free(&b->x[i]);
  b->n = 0;
  return 0;
}

/* Pushes a batch userdata for n transfers, all zeroed. */
static http_batch *http_batch_new(lua_State *L, int n) {
  if (n < 1) n = 1;
  if ((size_t)n > (((size_t)-1) - sizeof(http_batch)) / sizeof(http_xfer))
    luaL_error(L, "ksms.core: too many requests");
  size_t size = sizeof(http_batch) + (size_t)(n - 1) * sizeof(http_xfer);
  http_batch *b = lua_newuserdata(L, size);
  memset(b, 0, size);
  luaL_setmetatable(L, HTTP_BATCH_MT);
  b->n = n;
  for (int i = 0; i < n; i++) {
    b->x[i].connect_timeout_ms = -1;
    b->x[i].timeout_ms = -1;
  }
  return b;
}

/* ---- programmer errors ---- */

/* Raises a programmer error: "ksms.core: bad request: why" for
 * client:request (index 0), "bad request #i: why" for request_many (index
 * i), "ksms.core: why" elsewhere (index -1). Messages name fields and
 * header names, never a value (headers and bodies may carry keys). */
static int http_bad(lua_State *L, int index, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int http_bad(lua_State *L, int index, const char *fmt, ...) {
  char why[240];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  if (index > 0) return luaL_error(L, "ksms.core: bad request #%d: %s", index, why);
  if (index == 0) return luaL_error(L, "ksms.core: bad request: %s", why);
  return luaL_error(L, "ksms.core: %s", why);
}

/* The string or number at idx as a string, NULL for anything else. idx
 * must be a scratch slot (a value pushed for the purpose): a number is
 * converted in place, so the tables being walked are never modified. */
static const char *http_tostr(lua_State *L, int idx, size_t *len) {
  int t = lua_type(L, idx);
  if (t != LUA_TSTRING && t != LUA_TNUMBER) return NULL;
  return lua_tolstring(L, idx, len);
}

/* Raises unless every key of the table at idx is one of keys. */
static void http_check_keys(lua_State *L, int idx, const char *const *keys,
                            const char *what, int index) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) http_bad(L, index, "%s has a non-string key", what);
    const char *k = lua_tostring(L, -1);
    int known = 0;
    for (const char *const *p = keys; *p && !known; p++) known = strcmp(*p, k) == 0;
    if (!known) http_bad(L, index, "unknown %s '%.64s'", what, k);
  }
}

/* Seconds (a positive number) at field of the table at idx, as
 * milliseconds; dflt when absent. */
static long http_seconds(lua_State *L, int idx, const char *field, long dflt, int index) {
  lua_getfield(L, idx, field);
  long ms = dflt;
  if (!lua_isnil(L, -1)) {
    double s = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : NAN;
    if (!(s > 0 && s <= 1e7)) http_bad(L, index, "%s must be a number of seconds > 0", field);
    ms = (long)ceil(s * 1000.0);
  }
  lua_pop(L, 1);
  return ms;
}

/* ---- form encoding (WHATWG application/x-www-form-urlencoded) ---- */

static int http_form_keep(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '*' || c == '-' || c == '.' || c == '_';
}

static void http_form_bytes(lua_State *L, buf_t *out, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  unsigned char *o = buf_reserve(L, out, n * 3);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (http_form_keep(c)) {
      *o++ = c;
    } else if (c == ' ') {
      *o++ = '+';
    } else {
      *o++ = '%';
      *o++ = (unsigned char)hex[c >> 4];
      *o++ = (unsigned char)hex[c & 15];
    }
  }
  out->len = (size_t)(o - out->data);
}

/* Encodes the list { {name, value}, ... } at idx into out. */
static void http_form_encode(lua_State *L, int idx, buf_t *out, int index) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) http_bad(L, index, "form must be a list of {name, value}");
  int n = (int)lua_rawlen(L, idx);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TTABLE)
      http_bad(L, index, "form field %d must be a {name, value} pair", i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    size_t nl, vl;
    const char *name = http_tostr(L, -2, &nl);
    const char *value = http_tostr(L, -1, &vl);
    if (!name || !value)
      http_bad(L, index, "form field %d: name and value must be strings or numbers", i);
    if (i > 1) buf_putc(L, out, '&');
    http_form_bytes(L, out, name, nl);
    buf_putc(L, out, '=');
    http_form_bytes(L, out, value, vl);
    lua_pop(L, 3);
  }
}

/* ---- multipart/form-data, built as one byte string ---- */

/* Names and filenames go inside a quoted-string of the part's
 * Content-Disposition line. Parsers disagree about escapes there (RFC 7230
 * reads a backslash as one, WHATWG and many servers do not), so instead of
 * escaping, a name or filename that would need one is refused (raises, as
 * programmer misuse): a '"', a '\\' or a control character (HTAB, CR, LF,
 * NUL included). What is left is read alike by every parser. UTF-8 is kept
 * as is. */
static int http_bad_quoted(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\' || c < 0x20 || c == 0x7f) return 1;
  }
  return 0;
}

static const char *http_basename(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* A part's string field or NULL; raises when present but not a string. */
static const char *http_part_str(lua_State *L, int part, const char *field,
                                 size_t *len, int numbers, int index, int i) {
  lua_getfield(L, part, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  const char *s = numbers ? http_tostr(L, -1, len)
                          : (lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL);
  if (!s) http_bad(L, index, "multipart part %d: %s must be a string", i, field);
  /* Left on the stack: the caller pops the part's fields together. */
  return s;
}

/* Checks the parts list at idx (shapes and header-safe strings). */
static void http_multipart_check(lua_State *L, int idx, int index) {
  static const char *const part_keys[] = {"name", "value", "file", "data",
                                          "filename", "content_type", NULL};
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) http_bad(L, index, "multipart must be a list of parts");
  int n = (int)lua_rawlen(L, idx);
  for (int i = 1; i <= n; i++) {
    int top = lua_gettop(L);
    lua_rawgeti(L, idx, i);
    int part = lua_gettop(L);
    if (lua_type(L, part) != LUA_TTABLE) http_bad(L, index, "multipart part %d must be a table", i);
    http_check_keys(L, part, part_keys, "multipart part field", index);
    size_t len;
    const char *name = http_part_str(L, part, "name", &len, 0, index, i);
    if (!name) http_bad(L, index, "multipart part %d: name is required", i);
    if (http_bad_quoted(name, len))
      http_bad(L, index, "multipart part %d: name must not contain '\"', '\\' or control characters", i);
    int kinds = 0;
    const char *value = http_part_str(L, part, "value", &len, 1, index, i);
    const char *file = http_part_str(L, part, "file", &len, 0, index, i);
    if (file && (len == 0 || strlen(file) != len))
      http_bad(L, index, "multipart part %d: file must be a path", i);
    const char *data = http_part_str(L, part, "data", &len, 0, index, i);
    kinds = (value != NULL) + (file != NULL) + (data != NULL);
    if (kinds != 1)
      http_bad(L, index, "multipart part %d needs exactly one of value, file, data", i);
    const char *filename = http_part_str(L, part, "filename", &len, 0, index, i);
    if (filename && http_bad_quoted(filename, len))
      http_bad(L, index, "multipart part %d: filename must not contain '\"', '\\' or control characters", i);
    if (file && !filename && http_bad_quoted(http_basename(file), strlen(http_basename(file))))
      http_bad(L, index, "multipart part %d: the file's name has '\"', '\\' or a control character: give a filename", i);
    const char *ctype = http_part_str(L, part, "content_type", &len, 0, index, i);
    if (ctype) { /* quotes are fine here: media type parameters use them */
      int bad = len == 0;
      for (size_t k = 0; k < len; k++) bad |= ctype[k] == '\r' || ctype[k] == '\n' || ctype[k] == '\0';
      if (bad) http_bad(L, index, "multipart part %d: content_type must be a one-line value", i);
    }
    if (value && (filename || ctype))
      http_bad(L, index, "multipart part %d: a value part takes no filename or content_type", i);
    lua_settop(L, top);
  }
}

/* RFC 2046 bchars, without the space. */
static int http_boundary_ok(const char *s, size_t n) {
  if (n == 0 || n > HTTP_BOUNDARY_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (c == '\0' || !strchr("'()+_,-./:=?", c))) return 0;
  }
  return 1;
}

/* Fills out with "ksms-" and HTTP_BOUNDARY_RANDOM random alphanumerics. */
static int http_random_boundary(char *out, size_t cap) {
  unsigned char raw[HTTP_BOUNDARY_RANDOM];
  if (cap < 5 + sizeof raw + 1) return -1;
  if (core_random_bytes(raw, sizeof raw) != 0) return -1;
  memcpy(out, "ksms-", 5);
  for (size_t i = 0; i < sizeof raw; i++) out[5 + i] = http_alnum[raw[i] % 62];
  out[5 + sizeof raw] = '\0';
  return 0;
}

/* Appends a whole regular file to out; -1 with errbuf set when it cannot
 * be read. No Lua call happens while the file is open. */
static int http_read_file(buf_t *out, const char *path, char *errbuf, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(errbuf, errlen, "cannot read file '%s': %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(errbuf, errlen, "cannot read file '%s': not a regular file", path);
    fclose(f);
    return -1;
  }
  if (st.st_size > 0 && !http_room(out, (size_t)st.st_size)) {
    snprintf(errbuf, errlen, "cannot read file '%s': out of memory", path);
    fclose(f);
    return -1;
  }
  for (;;) {
    unsigned char *to = http_room(out, 16384);
    if (!to) {
      snprintf(errbuf, errlen, "cannot read file '%s': out of memory", path);
      fclose(f);
      return -1;
    }
    size_t got = fread(to, 1, 16384, f);
    out->len += got;
    if (got < 16384) break;
  }
  if (ferror(f)) {
    snprintf(errbuf, errlen, "cannot read file '%s': %s", path, strerror(errno));
    fclose(f);
    return -1;
  }
  fclose(f);
  return 0;
}

/* Appends the multipart body of the (checked) parts at idx to out.
 * Returns 0, -1 when a file could not be read (errbuf set), or 1 when the
 * boundary occurs in a part's content. */
static int http_multipart_build(lua_State *L, int idx, const char *boundary,
                                buf_t *out, char *errbuf, size_t errlen) {
  size_t blen = strlen(boundary);
  idx = lua_absindex(L, idx);
  int n = (int)lua_rawlen(L, idx);
  for (int i = 1; i <= n; i++) {
    int top = lua_gettop(L);
    lua_rawgeti(L, idx, i);
    int part = lua_gettop(L);
    size_t name_len, value_len = 0, data_len = 0, fn_len = 0, ct_len = 0;
    const char *name = http_part_str(L, part, "name", &name_len, 0, 0, i);
    const char *value = http_part_str(L, part, "value", &value_len, 1, 0, i);
    const char *file = http_part_str(L, part, "file", &fn_len, 0, 0, i);
    const char *data = http_part_str(L, part, "data", &data_len, 0, 0, i);
    const char *filename = http_part_str(L, part, "filename", &fn_len, 0, 0, i);
    const char *ctype = http_part_str(L, part, "content_type", &ct_len, 0, 0, i);
    if (file && !filename) {
      filename = http_basename(file);
      fn_len = strlen(filename);
    }
    buf_append(L, out, "--", 2);
    buf_append(L, out, boundary, blen);
    buf_append(L, out, "\r\nContent-Disposition: form-data; name=\"", 40);
    buf_append(L, out, name, name_len);
    buf_putc(L, out, '"');
    if (filename) {
      buf_append(L, out, "; filename=\"", 12);
      buf_append(L, out, filename, fn_len);
      buf_putc(L, out, '"');
    }
    buf_append(L, out, "\r\n", 2);
    if (!value) {
      if (!ctype) {
        ctype = "application/octet-stream";
        ct_len = strlen(ctype);
      }
      buf_append(L, out, "Content-Type: ", 14);
      buf_append(L, out, ctype, ct_len);
      buf_append(L, out, "\r\n", 2);
    }
    buf_append(L, out, "\r\n", 2);
    size_t start = out->len;
    if (value) buf_append(L, out, value, value_len);
    else if (data) buf_append(L, out, data, data_len);
    else if (http_read_file(out, file, errbuf, errlen) != 0) {
      lua_settop(L, top);
      return -1;
    }
    /* The delimiter is CRLF "--" boundary; finding "--" boundary anywhere
     * in a content is enough to refuse it. */
    if (out->len - start >= blen + 2) {
      const unsigned char *p = out->data + start, *end = out->data + out->len;
      while ((p = memchr(p, '-', (size_t)(end - p))) && (size_t)(end - p) >= blen + 2) {
        if (p[1] == '-' && memcmp(p + 2, boundary, blen) == 0) {
          lua_settop(L, top);
          return 1;
        }
        p++;
      }
    }
    buf_append(L, out, "\r\n", 2);
    lua_settop(L, top);
  }
  buf_append(L, out, "--", 2);
  buf_append(L, out, boundary, blen);
  buf_append(L, out, "--\r\n", 4);
  return 0;
}

/* Builds the multipart body of the parts at idx into out, with the given
 * boundary or a random one (written to boundary_out). Returns 0, or -1
 * when a file could not be read (errbuf set). */
static int http_multipart(lua_State *L, int idx, const char *given, buf_t *out,
                          char *boundary_out, size_t bcap, char *errbuf,
                          size_t errlen, int index) {
  http_multipart_check(L, idx, index);
  size_t start = out->len;
  for (int attempt = 0; attempt < 4; attempt++) {
    if (given) {
      snprintf(boundary_out, bcap, "%s", given);
    } else if (http_random_boundary(boundary_out, bcap) != 0) {
      luaL_error(L, "ksms.core: no random bytes for a multipart boundary");
    }
    out->len = start;
    int r = http_multipart_build(L, idx, boundary_out, out, errbuf, errlen);
    if (r <= 0) return r;
    if (given) http_bad(L, index, "the multipart boundary occurs in a part's content");
  }
  return luaL_error(L, "ksms.core: could not find a multipart boundary");
}

/* ---- a prepared request into a transfer ---- */

static int http_iequal(const char *a, size_t n, const char *b) {
  if (strlen(b) != n) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)a[i];
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
    if (c != (unsigned char)b[i]) return 0;
  }
  return 1;
}

static int http_is(const char *method, const char *name) {
  return strcmp(method, name) == 0;
}

static void http_add_line(lua_State *L, http_xfer *x, const char *line) {
  struct curl_slist *l = curl_slist_append(x->headers, line);
  if (!l) luaL_error(L, "ksms.core: out of memory");
  x->headers = l;
}

static int http_bad_prepared(lua_State *L, const char *why) {
  return luaL_error(L, "ksms.core: not a prepared request (ksms.transport.http1.prepare): %s", why);
}

/* The string field of the prepared request at p, or NULL when absent. */
static const char *http_pfield(lua_State *L, int p, const char *field, size_t *len) {
  lua_getfield(L, p, field);
  int t = lua_type(L, -1);
  const char *s = t == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
  lua_pop(L, 1); /* the string stays alive: p holds it */
  if (!s && t != LUA_TNIL) http_bad_prepared(L, field);
  return s;
}

static long http_pseconds(lua_State *L, int p, const char *field, long dflt) {
  lua_getfield(L, p, field);
  long ms = dflt;
  if (!lua_isnil(L, -1)) {
    double s = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : NAN;
    if (!(s > 0 && s <= 1e7)) http_bad_prepared(L, field);
    ms = (long)ceil(s * 1000.0 - 1e-6); /* prepare rounded it up to a millisecond */
  }
  lua_pop(L, 1);
  return ms;
}

/* Reads the request that ksms.transport.http1.prepare made (the table at
 * p) into x: its head becomes libcurl's request target and header list,
 * line for line, and its body is sent as is, so libcurl writes p.head ..
 * p.body and nothing else of its own. The strings stay owned by p, which
 * the caller keeps on the stack until the transfer is over. */
static void http_load(lua_State *L, http_client *c, http_xfer *x, int p) {
  p = lua_absindex(L, p);
  if (lua_type(L, p) != LUA_TTABLE) http_bad_prepared(L, "not a table");
  lua_getfield(L, p, "err");
  int failed = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (failed) { /* a multipart file could not be read: nothing is sent */
    x->pre_err = 1;
    return;
  }
  size_t ulen, hlen, mlen;
  const char *url = http_pfield(L, p, "url", &ulen);
  const char *head = http_pfield(L, p, "head", &hlen);
  const char *method = http_pfield(L, p, "method", &mlen);
  x->post = http_pfield(L, p, "body", &x->post_len);
  if (!url || strlen(url) != ulen) http_bad_prepared(L, "url");
  if (!method || mlen == 0 || mlen > HTTP_METHOD_MAX) http_bad_prepared(L, "method");
  if (!head || memchr(head, '\0', hlen)) http_bad_prepared(L, "head");
  x->url = malloc(ulen + 1);
  if (!x->url) luaL_error(L, "ksms.core: out of memory");
  memcpy(x->url, url, ulen + 1);
  memcpy(x->method, method, mlen);
  x->method[mlen] = '\0';
  x->has_body = x->post != NULL;
  x->head = http_is(x->method, "HEAD");
  x->safe = !x->has_body && (http_is(x->method, "GET") || x->head);

  /* The request line: METHOD SP target SP HTTP/1.1 */
  const char *end = head + hlen;
  const char *eol = memchr(head, '\r', hlen);
  const char *sp = eol ? memchr(head, ' ', (size_t)(eol - head)) : NULL;
  const char *sp2 = sp ? memchr(sp + 1, ' ', (size_t)(eol - sp - 1)) : NULL;
  if (!sp2 || (size_t)(sp - head) != mlen || memcmp(head, method, mlen) != 0 ||
      eol + 1 >= end || eol[1] != '\n' || (size_t)(eol - sp2) != 9 ||
      memcmp(sp2, " HTTP/1.1", 9) != 0)
    http_bad_prepared(L, "request line");
  size_t tlen = (size_t)(sp2 - sp - 1);
  x->target = malloc(tlen + 1);
  if (!x->target) luaL_error(L, "ksms.core: out of memory");
  memcpy(x->target, sp + 1, tlen);
  x->target[tlen] = '\0';

  /* Every header line as given; "Name:" (no value) as "Name;", which is
   * how libcurl is told to send "Name:". */
  int ctype = 0, accept = 0, blank = 0;
  char small[512];
  const char *q = eol + 2;
  while (q < end) {
    const char *le = memchr(q, '\r', (size_t)(end - q));
    if (!le || le + 1 >= end || le[1] != '\n') http_bad_prepared(L, "head");
    size_t n = (size_t)(le - q);
    if (n == 0) {
      blank = le + 2 == end;
      break;
    }
    const char *colon = memchr(q, ':', n);
    if (!colon || colon == q) http_bad_prepared(L, "header line");
    size_t name_len = (size_t)(colon - q);
    ctype |= http_iequal(q, name_len, "content-type");
    accept |= http_iequal(q, name_len, "accept");
    int empty = 1;
    for (const char *v = colon + 1; v < le && empty; v++) empty = *v == ' ' || *v == '\t';
    size_t keep = empty ? name_len + 1 : n;
    char *line = keep < sizeof small ? small : malloc(keep + 1);
    if (!line) luaL_error(L, "ksms.core: out of memory");
    memcpy(line, q, keep);
    if (empty) line[name_len] = ';';
    line[keep] = '\0';
    struct curl_slist *l = curl_slist_append(x->headers, line);
    explicit_bzero(line, keep);
    if (line != small) free(line);
    if (!l) luaL_error(L, "ksms.core: out of memory");
    x->headers = l;
    q = le + 2;
  }
  if (!blank) http_bad_prepared(L, "head does not end in an empty line");
  /* libcurl's own headers, each turned off unless the head has one. */
  http_add_line(L, x, "Expect:");
  if (!ctype) http_add_line(L, x, "Content-Type:");
  if (!accept) http_add_line(L, x, "Accept:");

  x->timeout_ms = http_pseconds(L, p, "timeout", c->timeout_ms);
  x->connect_timeout_ms = http_pseconds(L, p, "connect_timeout", c->connect_timeout_ms);
  x->max_response = c->max_response;
}

/* ---- libcurl callbacks: C buffers only, never a Lua call ---- */

/* Runs right before each attempt to send the request. */
static int http_prereq_cb(void *ud, char *remote_ip, char *local_ip, int remote_port,
                          int local_port) {
  http_xfer *x = ud;
  if (x->attempts++ > 0 && !x->safe) {
    x->resend_refused = 1;
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}

/* The status code of a status line ("HTTP/1.1 200 OK"), 0 if there is none. */
static long http_status_code(const char *p, size_t n) {
  const char *sp = memchr(p, ' ', n);
  if (!sp || (size_t)(sp - p) + 4 > n) return 0;
  long status = 0;
  for (int i = 1; i <= 3; i++) {
    if (sp[i] < '0' || sp[i] > '9') return 0;
    status = status * 10 + (sp[i] - '0');
  }
  return status;
}

static int http_blank(char c) { return c == ' ' || c == '\t'; }

/* The Content-Length rules of ksms.transport.http1 (framing and
 * content_length there), so both transports refuse the same answers: in a
 * final response that has a body (not to HEAD, not 204 or 304) and no
 * Transfer-Encoding, every Content-Length value - repeated headers and
 * comma-separated lists alike - must be the same run of 1 to 15 digits.
 * (libcurl alone takes the last header, and reads "3, 5" or "3x" as 3.)
 * NULL, or why the response is refused. */
static const char *http_check_length(const http_xfer *x) {
  if (x->head || x->hdr_status == 204 || x->hdr_status == 304 || x->hdrs.len == 0) return NULL;
  const char *p = (const char *)x->hdrs.data, *end = p + x->hdrs.len;
  const char *why = NULL;
  int chunked_or_close = 0, in_length = 0, have = 0;
  unsigned long long length = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = nl ? nl : end, *next = nl ? nl + 1 : end;
    if (line_end > p && line_end[-1] == '\r') line_end--;
    if (line_end > p && http_blank(*p)) { /* obs-fold: continues the line before */
      for (const char *q = p; in_length && q < line_end; q++)
        if (!http_blank(*q) && !why) why = "bad Content-Length";
      p = next;
      continue;
    }
    in_length = 0;
    const char *colon = memchr(p, ':', (size_t)(line_end - p));
    if (colon && colon > p && http_iequal(p, (size_t)(colon - p), "transfer-encoding")) {
      chunked_or_close = 1;
    } else if (colon && colon > p && http_iequal(p, (size_t)(colon - p), "content-length")) {
      in_length = 1;
      const char *v = colon + 1;
      for (;;) { /* one comma-separated item */
        const char *item_end = memchr(v, ',', (size_t)(line_end - v));
        if (!item_end) item_end = line_end;
        const char *a = v, *b = item_end;
        while (a < b && http_blank(*a)) a++;
        while (b > a && http_blank(b[-1])) b--;
        unsigned long long m = 0;
        int ok = b > a && b - a <= 15;
        for (const char *q = a; ok && q < b; q++) {
          ok = *q >= '0' && *q <= '9';
          if (ok) m = m * 10 + (unsigned long long)(*q - '0');
        }
        if (!ok && !why) why = "bad Content-Length";
        if (ok && have && m != length && !why) why = "conflicting Content-Length values";
        if (ok) {
          length = m;
          have = 1;
        }
        if (item_end == line_end) break;
        v = item_end + 1;
      }
    }
    p = next;
  }
  return chunked_or_close ? NULL : why;
}

static size_t http_header_cb(char *p, size_t size, size_t nitems, void *ud) {
  http_xfer *x = ud;
  size_t n = size * nitems;
  if (x->body_started) return n; /* trailers */
  /* Interim responses count too: endless 1xx answers end here, as
   * too_large, not at the timeout. */
  if (n > HTTP_MAX_HEADER_BYTES - x->hdr_total) {
    x->too_large = 1;
    return 0;
  }
  x->hdr_total += n;
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new response: 1xx, then the final one */
    x->hdrs.len = 0;
    x->hdr_status = http_status_code(p, n);
    if (x->hdr_status >= 100 && x->hdr_status < 200 && x->hdr_status != 101 &&
        ++x->interim > HTTP_MAX_INTERIM) {
      x->too_large = x->too_many_interim = 1;
      return 0;
    }
    return n;
  }
  if (n >= 1 && n <= 2 && (p[0] == '\r' || p[0] == '\n') && x->hdr_status >= 200) {
    /* the end of the final response's headers */
    x->bad_framing = http_check_length(x);
    if (x->bad_framing) return 0;
  }
  if (http_add(&x->hdrs, p, n) != 0) {
    x->out_of_memory = 1;
    return 0;
  }
  return n;
}

static size_t http_write_cb(char *p, size_t size, size_t nitems, void *ud) {
  http_xfer *x = ud;
  size_t n = size * nitems;
  x->body_started = 1;
  if (n > x->max_response - x->resp.len) {
    x->too_large = 1;
    return 0;
  }
  if (http_add(&x->resp, p, n) != 0) {
    x->out_of_memory = 1;
    return 0;
  }
  return n;
}

/* ---- the run phase ---- */

#define HTTP_SET(e, opt, val) \
  do { if (curl_easy_setopt((e), (opt), (val)) != CURLE_OK) goto fail; } while (0)

/* What every transfer of the client shares, set once per easy handle. */
static int http_easy_setup(http_client *c, CURL *e) {
  HTTP_SET(e, CURLOPT_PROTOCOLS_STR, "http,https");
  HTTP_SET(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  HTTP_SET(e, CURLOPT_NOSIGNAL, 1L);
  HTTP_SET(e, CURLOPT_TCP_NODELAY, 1L);
  HTTP_SET(e, CURLOPT_FOLLOWLOCATION, 0L);
  HTTP_SET(e, CURLOPT_PROXY, c->proxy ? c->proxy : "");
  HTTP_SET(e, CURLOPT_USERAGENT, (char *)NULL); /* the prepared head has it */
  HTTP_SET(e, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
  HTTP_SET(e, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
  if (c->ca_file) HTTP_SET(e, CURLOPT_CAINFO, c->ca_file);
  HTTP_SET(e, CURLOPT_HEADERFUNCTION, http_header_cb);
  HTTP_SET(e, CURLOPT_WRITEFUNCTION, http_write_cb);
  HTTP_SET(e, CURLOPT_PREREQFUNCTION, http_prereq_cb);
  return 0;
fail:
  return -1;
}

/* An easy handle set up for this client: a finished one kept for reuse
 * (making one costs more than a request on a local network), or a new one. */
static CURL *http_easy_take(http_client *c) {
  if (c->n_idle > 0) return c->idle[--c->n_idle];
  CURL *e = curl_easy_init();
  if (e && http_easy_setup(c, e) != 0) {
    curl_easy_cleanup(e);
    e = NULL;
  }
  return e;
}

/* Takes an easy handle for x, sets what is x's own and attaches it.
 * Every per-request option is set each time, so nothing from the handle's
 * previous transfer (method, body, headers, timeouts) carries over.
 * 0, or -1 with x finished. */
static int http_attach(http_client *c, http_xfer *x) {
  CURL *e = http_easy_take(c);
  if (!e) goto fail;
  x->easy = e;
  HTTP_SET(e, CURLOPT_PRIVATE, (void *)x);
  HTTP_SET(e, CURLOPT_ERRORBUFFER, x->errbuf);
  HTTP_SET(e, CURLOPT_URL, x->url);
  /* The target as prepared (libcurl would normalise the path); through a
   * proxy libcurl writes the absolute form itself. */
  HTTP_SET(e, CURLOPT_REQUEST_TARGET, c->proxy && c->proxy[0] ? NULL : x->target);
  HTTP_SET(e, CURLOPT_CONNECTTIMEOUT_MS, x->connect_timeout_ms);
  HTTP_SET(e, CURLOPT_TIMEOUT_MS, x->timeout_ms);
  HTTP_SET(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)(x->head ? 0 : x->max_response));
  HTTP_SET(e, CURLOPT_HTTPHEADER, x->headers);
  HTTP_SET(e, CURLOPT_HEADERDATA, (void *)x);
  HTTP_SET(e, CURLOPT_WRITEDATA, (void *)x);
  HTTP_SET(e, CURLOPT_PREREQDATA, (void *)x);
  HTTP_SET(e, CURLOPT_CUSTOMREQUEST, (char *)NULL);
  if (x->has_body) {
    HTTP_SET(e, CURLOPT_POST, 1L);
    HTTP_SET(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->post_len);
    /* libcurl reads it in place; the prepared table owns it until the end. */
    HTTP_SET(e, CURLOPT_POSTFIELDS, x->post_len ? x->post : "");
    if (!http_is(x->method, "POST")) HTTP_SET(e, CURLOPT_CUSTOMREQUEST, x->method);
  } else if (x->head) {
    HTTP_SET(e, CURLOPT_NOBODY, 1L);
  } else {
    HTTP_SET(e, CURLOPT_HTTPGET, 1L);
    if (!http_is(x->method, "GET")) HTTP_SET(e, CURLOPT_CUSTOMREQUEST, x->method);
  }
  if (curl_multi_add_handle(c->multi, e) != CURLM_OK) goto fail;
  return 0;
fail:
  if (x->easy) curl_easy_cleanup(x->easy);
  x->easy = NULL;
  x->done = 1;
  x->result = CURLE_OUT_OF_MEMORY;
  x->out_of_memory = 1;
  return -1;
}

/* Records the outcome of an attached transfer and drops its easy handle
 * (its connection stays in the client's cache). */
static void http_finish(http_client *c, http_xfer *x, CURLcode result) {
  long status = 0;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(c->multi, x->easy);
  if (c->n_idle < HTTP_IDLE_MAX)
    c->idle[c->n_idle++] = x->easy;
  else
    curl_easy_cleanup(x->easy);
  x->easy = NULL;
  x->status = status;
  x->result = result;
  x->done = 1;
}

/* request_many's streaming callbacks (both optional): on_start(i) just
 * before request i is handed to libcurl (false exactly: it is not sent; a
 * positive number d: not yet, ask again in d seconds, the transfers in
 * flight going on meanwhile: ksms.client's rate option waits so),
 * on_done(i, res | err) as soon as request i's outcome is known. They run
 * under lua_pcall, so a raise never unwinds through the multi loop with
 * handles attached: the first one is kept, no further request starts, the
 * attached ones finish (their on_done still called), and request_many
 * raises it at the end. */
typedef struct http_hooks {
  lua_State *L;
  int on_start, on_done;     /* stack indices, 0 when absent */
  int results, preps;        /* the results table, the prepared requests */
  int failed;                /* a callback raised: its error is at error_ref */
  int error_ref;
} http_hooks;

static void http_push_result(lua_State *L, http_xfer *x, int *is_response);

/* Calls fn(i [, outcome]) protected; keeps the first raise. Returns the
 * call's first result as a boolean-ish: 0 for false exactly, 2 for a
 * positive number (stored in *defer, at most a minute: the caller asks
 * again then), else 1. */
static int http_hook_call(http_hooks *h, int fn, int i, int with_outcome, double *defer) {
  lua_State *L = h->L;
  lua_pushvalue(L, fn);
  lua_pushinteger(L, i);
  if (with_outcome) lua_pushvalue(L, -3);
  int rc = lua_pcall(L, with_outcome ? 2 : 1, 1, 0);
  if (rc != LUA_OK) {
    if (!h->failed) {
      h->failed = 1;
      h->error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
      lua_pop(L, 1);
    }
    return 1;
  }
  int go = !(lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1));
  if (defer && lua_type(L, -1) == LUA_TNUMBER) {
    double d = (double)lua_tonumber(L, -1);
    if (d > 0) { /* NaN is not > 0: it starts */
      *defer = d < 60 ? d : 60;
      go = 2;
    }
  }
  lua_pop(L, 1);
  return go;
}

static double http_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Transfer k's outcome is known: push it into the results and tell on_done.
 * The transfer's buffers are freed at once, so a long streamed batch holds
 * only the outcomes, not every response body twice. */
static void http_hook_done(http_hooks *h, http_batch *b, int k) {
  lua_State *L = h->L;
  http_xfer *x = &b->x[k];
  if (x->pre_err) {
    lua_rawgeti(L, h->preps, k + 1);
    lua_getfield(L, -1, "err");
    lua_remove(L, -2);
  } else {
    http_push_result(L, x, NULL);
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, h->results, k + 1);
  x->pushed = 1;
  http_xfer_free(x);
  if (h->on_done) http_hook_call(h, h->on_done, k + 1, 1, NULL);
  lua_pop(L, 1);
}

/* Runs the batch's transfers, at most conc at a time, each next one added
 * as one finishes. Every easy handle is detached when it returns. */
static void http_run(http_client *c, http_batch *b, int conc, http_hooks *h) {
  int next = 0, active = 0;
  double resume_at = 0; /* on_start deferred request next until then */
  for (;;) {
    while (active < conc && next < b->n && !(h && h->failed)) {
      if (resume_at > 0 && http_monotonic() < resume_at) break;
      resume_at = 0;
      int k = next++;
      http_xfer *x = &b->x[k];
      if (x->pre_code || x->pre_err) {
        if (h) http_hook_done(h, b, k);
        continue;
      }
      if (h && h->on_start) {
        double defer = 0;
        int go = http_hook_call(h, h->on_start, k + 1, 0, &defer);
        if (h->failed) { next--; break; } /* not started: request_many raises */
        if (go == 2) { next--; resume_at = http_monotonic() + defer; break; }
        if (!go) {
          x->cancelled = 1;
          http_hook_done(h, b, k);
          continue;
        }
      }
      if (http_attach(c, x) == 0) active++;
      else if (h) http_hook_done(h, b, k);
    }
    if (active == 0) {
      if (resume_at > 0 && next < b->n && !(h && h->failed)) {
        /* Nothing in flight: wait for the deferred start. */
        double left = resume_at - http_monotonic();
        if (left > 0) {
          struct timespec ts;
          ts.tv_sec = (time_t)left;
          ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
          while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
        }
        continue;
      }
      return;
    }
    int running = 0;
    CURLMcode mc = curl_multi_perform(c->multi, &running);
    CURLMsg *m;
    int queued;
    while ((m = curl_multi_info_read(c->multi, &queued))) {
      if (m->msg != CURLMSG_DONE) continue;
      CURL *e = m->easy_handle;
      CURLcode result = m->data.result;
      char *priv = NULL;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
      http_xfer *x = (http_xfer *)(void *)priv;
      http_finish(c, x, result);
      active--;
      if (h) http_hook_done(h, b, (int)(x - b->x));
    }
    if (mc != CURLM_OK) {
      /* The multi handle itself failed: end what is still attached. */
      for (int i = 0; i < next; i++) {
        http_xfer *x = &b->x[i];
        if (x->easy) {
          x->out_of_memory = mc == CURLM_OUT_OF_MEMORY;
          http_finish(c, x, CURLE_OUT_OF_MEMORY);
          active--;
          if (h) http_hook_done(h, b, i);
        }
      }
      continue;
    }
    int poll_ms = HTTP_POLL_MS;
    if (resume_at > 0) {
      /* A deferred start: poll no longer than until then. */
      double left = (resume_at - http_monotonic()) * 1000;
      poll_ms = left <= 0 ? 0 : left < HTTP_POLL_MS ? (int)left + 1 : HTTP_POLL_MS;
    }
    if (active < conc && next < b->n && !(h && h->failed) && resume_at == 0) continue; /* a slot is free */
    if (active > 0 && poll_ms > 0) curl_multi_poll(c->multi, NULL, 0, poll_ms, NULL);
  }
}

/* ---- the results phase ---- */

/* Pushes the response header lines as { lowercased name = value }, a
 * repeated header joined with ", ", folded lines unfolded. A repeated
 * header's values are joined once at the end: joining on each repeat would
 * copy the value again for every one of thousands of repeats. */
static void http_push_headers(lua_State *L, const char *block, size_t len) {
  lua_newtable(L);
  int t = lua_gettop(L);
  lua_newtable(L);                        /* name -> { value, ... } of repeated names */
  int repeats = lua_gettop(L);
  const char *p = block, *end = p + len;
  while (p && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = nl ? nl : end;
    const char *next = nl ? nl + 1 : end;
    if (line_end > p && line_end[-1] == '\r') line_end--;
    const char *colon = memchr(p, ':', (size_t)(line_end - p));
    if (line_end == p || !colon || colon == p || *p == ' ' || *p == '\t') {
      p = next;
      continue;
    }
    luaL_Buffer nb;
    luaL_buffinit(L, &nb);
    for (const char *q = p; q < colon; q++) {
      char ch = *q;
      luaL_addchar(&nb, (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch);
    }
    luaL_pushresult(&nb);
    luaL_Buffer vb;
    luaL_buffinit(L, &vb);
    const char *v = colon + 1;
    for (;;) {
      while (v < line_end && (*v == ' ' || *v == '\t')) v++;
      const char *ve = line_end;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      luaL_addlstring(&vb, v, (size_t)(ve - v));
      /* obs-fold: a line starting with SP/HT continues this value */
      if (next < end && (*next == ' ' || *next == '\t')) {
        const char *nl2 = memchr(next, '\n', (size_t)(end - next));
        v = next;
        line_end = nl2 ? nl2 : end;
        next = nl2 ? nl2 + 1 : end;
        if (line_end > v && line_end[-1] == '\r') line_end--;
        luaL_addchar(&vb, ' ');
        continue;
      }
      break;
    }
    luaL_pushresult(&vb);                 /* t repeats name value */
    lua_pushvalue(L, -2);
    lua_rawget(L, t);                     /* t repeats name value old */
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_rawset(L, t);
    } else {
      lua_pushvalue(L, -3);
      lua_rawget(L, repeats);             /* t repeats name value old list */
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_createtable(L, 4, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);            /* list = { old } */
        lua_pushvalue(L, -3);
        lua_pushvalue(L, -2);
        lua_rawset(L, repeats);           /* t repeats name value list */
      } else {
        lua_remove(L, -2);
      }
      lua_insert(L, -2);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
      lua_pop(L, 2);
    }
    p = next;
  }
  lua_pushnil(L);
  while (lua_next(L, repeats)) {          /* t repeats name list */
    int list = lua_gettop(L);             /* absolute: the buffer may use the stack */
    int n = (int)lua_rawlen(L, list);
    luaL_Buffer jb;
    luaL_buffinit(L, &jb);
    for (int i = 1; i <= n; i++) {
      if (i > 1) luaL_addlstring(&jb, ", ", 2);
      lua_rawgeti(L, list, i);
      luaL_addvalue(&jb);
    }
    luaL_pushresult(&jb);                 /* t repeats name list joined */
    lua_pushvalue(L, -3);
    lua_insert(L, -2);
    lua_rawset(L, t);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void http_set_bool(lua_State *L, const char *field, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, field);
}

/* Pushes an error object (no leading nil) for a failed transfer. */
static void http_push_error(lua_State *L, http_xfer *x) {
  if (x->pre_code) {
    err_push(L, "invalid_input", x->pre_code, "%s", x->errbuf);
    lua_remove(L, -2);
    http_set_bool(L, "maybe_sent", 0);
    return;
  }
  CURLcode rc = x->result;
  int sent = x->attempts > 0;
  const char *category = "network", *code;
  const char *what;
  const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      category = "timeout";
      code = "timeout";
      what = sent ? "timed out after the request was sent" : "timed out before the request was sent";
      break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      code = "dns";
      what = "name lookup failed";
      break;
    case CURLE_COULDNT_CONNECT:
      code = "connect";
      what = "could not connect";
      break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_CLIENTCERT:
      code = "tls";
      what = "TLS failure";
      break;
    case CURLE_SEND_ERROR:
      code = "send";
      what = "sending the request failed";
      break;
    case CURLE_SEND_FAIL_REWIND:
    case CURLE_ABORTED_BY_CALLBACK:
      code = "recv";
      sent = 1;
      what = "the connection closed after the request was sent; not resent, the server may have acted on it";
      detail = "reused connection died";
      break;
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
      code = "recv";
      what = "the connection failed while waiting for the response";
      break;
    case CURLE_FILESIZE_EXCEEDED:
      category = "protocol";
      code = "too_large";
      what = "response body over max_response";
      break;
    case CURLE_WRITE_ERROR:
      if (x->bad_framing) {
        category = "protocol";
        code = "protocol";
        what = x->bad_framing;
      } else if (x->too_large) {
        category = "protocol";
        code = "too_large";
        what = x->body_started ? "response body over max_response"
               : x->too_many_interim ? "more than " HTTP_STR(HTTP_MAX_INTERIM) " interim (1xx) responses"
               : "response headers too large";
      } else {
        code = "recv";
        what = "out of memory while receiving";
      }
      break;
    case CURLE_OUT_OF_MEMORY:
      /* libcurl 7.88 ends a response header line over its 100 KiB limit
       * (CURL_MAX_HTTP_HEADER) this way; our own allocations set
       * out_of_memory. */
      if (sent && !x->out_of_memory) {
        category = "protocol";
        code = "too_large";
        what = "response header line too long (libcurl takes at most 100 KiB)";
      } else {
        code = sent ? "recv" : "connect";
        what = "out of memory";
      }
      break;
#if LIBCURL_VERSION_NUM >= 0x080600
    case CURLE_TOO_LARGE: /* libcurl 8.6+: a header line or block over its limits */
      category = "protocol";
      code = "too_large";
      what = "response headers too large";
      break;
#endif
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL: /* only http(s) URLs get here: HTTP/0.9 garbage */
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_RANGE_ERROR:
      category = "protocol";
      code = "protocol";
      what = "malformed HTTP response";
      break;
    default:
      code = sent ? "recv" : "connect";
      what = x->out_of_memory ? "out of memory" : "transfer failed";
      break;
  }
  if (x->resend_refused) sent = 1;
  err_push(L, category, code, "%s (%s)", what, detail);
  lua_remove(L, -2);
  http_set_bool(L, "maybe_sent", sent);
  http_set_bool(L, "retryable",
                (strcmp(category, "network") == 0 || strcmp(category, "timeout") == 0) && !sent);
  lua_pushinteger(L, (lua_Integer)rc);
  lua_setfield(L, -2, "curl_code");
}

/* Pushes x's response table, or its error object; *is_response (when
 * given) tells which. */
static void http_push_result(lua_State *L, http_xfer *x, int *is_response) {
  if (is_response) *is_response = 0;
  if (x->cancelled) {
    err_push(L, "cancelled", "cancelled", "not sent: the caller's on_start returned false");
    lua_remove(L, -2);
    http_set_bool(L, "maybe_sent", 0);
    http_set_bool(L, "retryable", 0);
    return;
  }
  if (x->pre_code || x->result != CURLE_OK) {
    http_push_error(L, x);
    return;
  }
  if (is_response) *is_response = 1;
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)x->status);
  lua_setfield(L, -2, "status");
  /* The header table is made on first use (most callers only read the
   * status and body, and building it costs as much as the rest). */
  if (x->hdrs.len) lua_pushlstring(L, (const char *)x->hdrs.data, x->hdrs.len);
  else lua_pushliteral(L, "");
  lua_setfield(L, -2, "raw_headers");
  if (x->resp.len) lua_pushlstring(L, (const char *)x->resp.data, x->resp.len);
  else lua_pushliteral(L, "");
  lua_setfield(L, -2, "body");
  luaL_setmetatable(L, HTTP_RESPONSE_MT);
}

/* res.headers, built from res.raw_headers the first time it is read. */
static int http_response_index(lua_State *L) {
  size_t klen;
  const char *key = lua_tolstring(L, 2, &klen);
  if (!key || klen != 7 || memcmp(key, "headers", 7) != 0) return 0;
  lua_getfield(L, 1, "raw_headers");
  size_t len = 0;
  const char *block = lua_tolstring(L, -1, &len);
  http_push_headers(L, block ? block : "", block ? len : 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, 1, "headers");
  return 1;
}

/* ---- the client ---- */

static http_client *http_check_open(lua_State *L) {
  http_client *c = luaL_checkudata(L, 1, HTTP_CLIENT_MT);
  if (!c->multi) luaL_error(L, "ksms.core: the http client is closed");
  if (c->busy) luaL_error(L, "ksms.core: the http client is busy (called from its own request_many callback)");
  return c;
}

static void http_client_release(lua_State *L, http_client *c) {
  luaL_unref(L, LUA_REGISTRYINDEX, c->defaults_ref);
  c->defaults_ref = LUA_NOREF;
  while (c->n_idle > 0) curl_easy_cleanup(c->idle[--c->n_idle]);
  if (c->multi) curl_multi_cleanup(c->multi); /* closes cached connections */
  c->multi = NULL;
  free(c->ca_file);
  free(c->proxy);
  c->ca_file = c->proxy = NULL;
}

/* client:close() - releases the connections; idempotent. Also __gc and
 * __close (Lua 5.4 to-be-closed variables). */
static int http_client_close(lua_State *L) {
  http_client *c = luaL_checkudata(L, 1, HTTP_CLIENT_MT);
  if (c->busy) luaL_error(L, "ksms.core: the http client cannot close inside its own request_many callback");
  http_client_release(L, c);
  return 0;
}

/* Pushes ksms.transport.http1.prepare, the one request writer (required
 * once, then kept in the registry). */
static void http_push_prepare(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "ksms.core.http1_prepare");
  if (lua_isfunction(L, -1)) return;
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "ksms.transport.http1");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "prepare");
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) luaL_error(L, "ksms.core: ksms.transport.http1 has no prepare");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "ksms.core.http1_prepare");
}

/* Calls prepare(req, defaults, index) on the request at idx; pushes p.
 * Misuse raises there, as "ksms.core: bad request[ #index]: why". */
static void http_call_prepare(lua_State *L, http_client *c, int fn, int idx, int index) {
  idx = lua_absindex(L, idx);
  lua_pushvalue(L, fn);
  lua_pushvalue(L, idx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->defaults_ref);
  lua_pushinteger(L, index);
  lua_call(L, 3, 1);
}

/* client:request(req) -> res | nil, err
 * req as in ksms.transport; written by ksms.transport.http1.prepare.
 * res = { status =, headers = { lowercased name = value }, body = } */
static int http_client_request(lua_State *L) {
  http_client *c = http_check_open(L);
  lua_settop(L, 2);
  http_push_prepare(L);                        /* 3 */
  http_call_prepare(L, c, 3, 2, 0);            /* 4: p */
  http_batch *b = http_batch_new(L, 1);        /* 5 */
  http_load(L, c, &b->x[0], 4);
  /* A finalizer run while preparing may have closed the client. */
  if (!c->multi) luaL_error(L, "ksms.core: the http client is closed");
  if (b->x[0].pre_err) {
    http_xfer_free(&b->x[0]);
    lua_pushnil(L);
    lua_getfield(L, 4, "err");
    return 2;
  }
  http_run(c, b, 1, NULL);
  int ok;
  http_push_result(L, &b->x[0], &ok);
  http_xfer_free(&b->x[0]);
  if (ok) return 1;
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* client:request_many(reqs [, { concurrency = 8, on_start = fn(i), on_done = fn(i, res | err) }])
 *   -> { res | err, ... }
 * Same length and order as reqs; every request is prepared before any is
 * sent; at most concurrency transfers at once, the next one started as one
 * finishes. on_start and on_done: see http_hooks. */
static int http_client_request_many(lua_State *L) {
  static const char *const opt_keys[] = {"concurrency", "on_start", "on_done", NULL};
  http_client *c = http_check_open(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  int conc = HTTP_DEFAULT_CONCURRENCY;
  lua_settop(L, 3);
  lua_pushnil(L);                              /* 4: on_start */
  lua_pushnil(L);                              /* 5: on_done */
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    http_check_keys(L, 3, opt_keys, "request_many option", -1);
    lua_getfield(L, 3, "concurrency");
    if (!lua_isnil(L, -1)) {
      lua_Number v = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || v != floor(v) || v < 1 || v > 1e6)
        luaL_argerror(L, 3, "concurrency must be a whole number >= 1");
      conc = (int)v;
    }
    lua_pop(L, 1);
    static const char *const hooks[] = {"on_start", "on_done"};
    for (int i = 0; i < 2; i++) {
      lua_getfield(L, 3, hooks[i]);
      if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
        luaL_argerror(L, 3, i == 0 ? "on_start must be a function" : "on_done must be a function");
      lua_replace(L, 4 + i);
    }
  }
  int n = (int)lua_rawlen(L, 2);
  lua_createtable(L, n, 0);                    /* 6: the results */
  if (n == 0) return 1;
  lua_createtable(L, n, 0);                    /* 7: the prepared requests */
  http_push_prepare(L);                        /* 8 */
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    http_call_prepare(L, c, 8, -1, i);
    lua_rawseti(L, 7, i);
    lua_pop(L, 1);
  }
  http_batch *b = http_batch_new(L, n);        /* 9 */
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 7, i);
    http_load(L, c, &b->x[i - 1], -1);
    lua_pop(L, 1);
  }
  if (!c->multi) luaL_error(L, "ksms.core: the http client is closed");
  http_hooks hooks = {L, lua_isnil(L, 4) ? 0 : 4, lua_isnil(L, 5) ? 0 : 5, 6, 7, 0, LUA_NOREF};
  int streaming = hooks.on_start || hooks.on_done;
  if (streaming) c->busy = 1;
  http_run(c, b, conc, streaming ? &hooks : NULL);
  c->busy = 0;
  if (hooks.failed) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, hooks.error_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, hooks.error_ref);
    return lua_error(L); /* the batch userdata's __gc frees what is left */
  }
  for (int i = 0; i < n; i++) {
    if (b->x[i].pushed) continue;
    if (b->x[i].pre_err) {
      lua_rawgeti(L, 7, i + 1);
      lua_getfield(L, -1, "err");
      lua_remove(L, -2);
    } else {
      http_push_result(L, &b->x[i], NULL);
    }
    lua_rawseti(L, 6, i + 1);
    http_xfer_free(&b->x[i]);
  }
  lua_settop(L, 6);
  return 1;
}

static int http_client_tostring(lua_State *L) {
  http_client *c = luaL_checkudata(L, 1, HTTP_CLIENT_MT);
  lua_pushfstring(L, "ksms.core.http_client (%s): %p", c->multi ? "open" : "closed", (void *)c);
  return 1;
}

static char *http_opt_string(lua_State *L, const char *field, const char *dflt) {
  lua_getfield(L, 1, field);
  const char *s = dflt;
  size_t len = dflt ? strlen(dflt) : 0;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "ksms.core: http_client option %s must be a string", field);
    s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len) luaL_error(L, "ksms.core: http_client option %s contains NUL", field);
    for (size_t i = 0; i < len; i++)
      if (s[i] == '\r' || s[i] == '\n')
        luaL_error(L, "ksms.core: http_client option %s contains CR or LF", field);
  }
  char *copy = NULL;
  if (s) {
    copy = malloc(len + 1);
    if (!copy) luaL_error(L, "ksms.core: out of memory");
    memcpy(copy, s, len + 1);
  }
  lua_pop(L, 1);
  return copy;
}

static double http_opt_whole(lua_State *L, const char *field, double dflt, double lo, double hi) {
  lua_getfield(L, 1, field);
  double v = dflt;
  if (!lua_isnil(L, -1)) {
    v = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : NAN;
    if (!(v >= lo && v <= hi && v == floor(v)))
      luaL_error(L, "ksms.core: http_client option %s must be a whole number in %.0f..%.0f",
                 field, lo, hi);
  }
  lua_pop(L, 1);
  return v;
}

/* core.http_client([opts]) -> client
 * opts: connect_timeout (s, 10), timeout (s per request, 30), max_response
 * (body bytes, 4 MiB), insecure (true turns TLS peer and host verification
 * OFF), ca_file (CA bundle to trust instead of the system's), user_agent
 * ("ksms/<version>"), max_connections (connection cache size, 16), proxy
 * (none by default, whatever the environment says). */
static int http_client_new(lua_State *L) {
  static const char *const keys[] = {"connect_timeout", "timeout", "max_response",
                                     "insecure", "ca_file", "user_agent",
                                     "max_connections", "proxy", NULL};
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  http_check_keys(L, 1, keys, "http_client option", -1);
  http_client *c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->defaults_ref = LUA_NOREF;
  luaL_setmetatable(L, HTTP_CLIENT_MT);
  c->connect_timeout_ms = http_seconds(L, 1, "connect_timeout", HTTP_DEFAULT_CONNECT_MS, -1);
  c->timeout_ms = http_seconds(L, 1, "timeout", HTTP_DEFAULT_TIMEOUT_MS, -1);
  c->max_response = (size_t)http_opt_whole(L, "max_response", (double)HTTP_DEFAULT_MAX_RESPONSE,
                                           1, 1099511627776.0);
  long maxconn = (long)http_opt_whole(L, "max_connections", HTTP_DEFAULT_MAX_CONNECTIONS, 1, 10000);
  lua_getfield(L, 1, "insecure");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
    luaL_error(L, "ksms.core: http_client option insecure must be a boolean");
  c->insecure = lua_toboolean(L, -1);
  lua_pop(L, 1);
  char *ua = http_opt_string(L, "user_agent", "ksms/" KSMS_VERSION);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, ua);
  free(ua);
  lua_setfield(L, -2, "user_agent");
  lua_pushliteral(L, "ksms.core");
  lua_setfield(L, -2, "who");
  c->defaults_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->ca_file = http_opt_string(L, "ca_file", NULL);
  if (c->ca_file && access(c->ca_file, R_OK) != 0)
    luaL_error(L, "ksms.core: http_client option ca_file: cannot read '%s'", c->ca_file);
  c->proxy = http_opt_string(L, "proxy", "");
  c->multi = curl_multi_init();
  if (!c->multi) luaL_error(L, "ksms.core: out of memory");
  curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, maxconn);
  curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
  return 1;
}

/* core.urlencode_form({ {name, value}, ... }) -> "name=value&..."
 * WHATWG application/x-www-form-urlencoded: ALNUM and *-._ kept, space as
 * '+', every other byte %XX (upper case). Bytes are encoded as given: UTF-8
 * text stays UTF-8. Numbers are converted. */
static int http_urlencode_form(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  buf_t *out = buf_owned(L); /* freed by its __gc if a raise comes */
  http_form_encode(L, 1, out, -1);
  lua_pushlstring(L, out->len ? (const char *)out->data : "", out->len);
  buf_free(out);
  return 1;
}

/* core.multipart_body(parts [, boundary]) -> body, content_type | nil, err
 * parts: { name =, value = } | { name =, file = path [, filename =]
 * [, content_type =] } | { name =, data = bytes [, filename =]
 * [, content_type =] }. A random boundary unless one is given. A file that
 * cannot be read: nil, err (invalid_input, "file"). */
static int http_multipart_body(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *given = NULL;
  if (!lua_isnoneornil(L, 2)) {
    size_t bl;
    given = luaL_checklstring(L, 2, &bl);
    if (!http_boundary_ok(given, bl))
      luaL_argerror(L, 2, "boundary must be 1-70 characters from [A-Za-z0-9'()+_,-./:=?]");
  }
  lua_settop(L, 2);
  http_batch *b = http_batch_new(L, 1);
  http_xfer *x = &b->x[0];
  char bnd[HTTP_BOUNDARY_MAX + 1];
  if (http_multipart(L, 1, given, &x->body, bnd, sizeof bnd, x->errbuf, sizeof x->errbuf, -1) != 0) {
    x->pre_code = "file";
    lua_pushnil(L);
    http_push_error(L, x);
    http_xfer_free(x);
    return 2;
  }
  if (x->body.len) lua_pushlstring(L, (const char *)x->body.data, x->body.len);
  else lua_pushliteral(L, "");
  lua_pushfstring(L, "multipart/form-data; boundary=%s", bnd);
  http_xfer_free(x);
  return 2;
}

void http_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"request", http_client_request},
      {"request_many", http_client_request_many},
      {"close", http_client_close},
      {NULL, NULL},
  };
  static const luaL_Reg fns[] = {
      {"http_client", http_client_new},
      {"urlencode_form", http_urlencode_form},
      {"multipart_body", http_multipart_body},
      {NULL, NULL},
  };
  luaL_newmetatable(L, HTTP_CLIENT_MT);
  luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, http_client_close);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__gc");
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, http_client_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newmetatable(L, HTTP_BATCH_MT);
  lua_pushcfunction(L, http_batch_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, HTTP_RESPONSE_MT);
  lua_pushcfunction(L, http_response_index);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  core_register(L, fns);
}
