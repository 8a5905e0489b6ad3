/*
 * fuzz_form - the request body encoders: core.urlencode_form and
 * core.multipart_body (what the HTTP transports send; both build bytes
 * without any I/O), with fields and parts built from the input.
 *
 * Input: byte 0 picks the encoder (even: form) and, for multipart, a given
 * boundary or a random one; then per field a kind byte and strings.
 *
 * Invariants, form: the output uses only ALNUM *-._ + % & = with %XX in
 * upper case, and decodes back to exactly the names and values given
 * (numbers as tostring gives them). Multipart: a part with a name,
 * filename or content type a header cannot carry (or a backslash), two
 * kinds of content, or a given boundary found in a content may raise (that
 * is misuse), nothing else may; the body parses back (RFC 2046 delimiters, RFC 7578 headers)
 * into the same names, filenames, content types and bytes; every quoted
 * string in it ends at the same quote whether or not a reader honours
 * backslash escapes (RFC 7230 quoted-pair), so no reader can misread it.
 */
#include <ctype.h>
#include "harness.h"

#define MAX_PARTS 8

/* What csrc/http.c refuses inside a quoted multipart name or filename. */
static int fz_bad_quoted(const uint8_t *s, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (s[k] < 0x20 || s[k] == 0x7f || s[k] == '"' || s[k] == '\\') return 1;
  return 0;
}

typedef struct fz_part {
  const uint8_t *name, *content, *filename, *ctype;
  size_t name_n, content_n, filename_n, ctype_n;
  int is_value, has_filename, has_ctype;
} fz_part;

static int fz_eq(const void *a, size_t an, const void *b, size_t bn) {
  return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static int fz_unhex(int c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes s[0..n) of a form into out (the caller's buffer of n bytes). */
static size_t fz_form_decode(const uint8_t *s, size_t n, uint8_t *out) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '+') out[k++] = ' ';
    else if (s[i] == '%') {
      FZ_CHECK(i + 2 < n && fz_unhex(s[i + 1]) >= 0 && fz_unhex(s[i + 2]) >= 0,
               "form: '%%' not followed by two upper-case hex digits");
      out[k++] = (uint8_t)(fz_unhex(s[i + 1]) << 4 | fz_unhex(s[i + 2]));
      i += 2;
    } else {
      FZ_CHECK(isalnum(s[i]) || s[i] == '*' || s[i] == '-' || s[i] == '.' || s[i] == '_',
               "form: byte 0x%02x left unencoded", s[i]);
      out[k++] = s[i];
    }
  }
  return k;
}

/* Pushes a form name or value from the input: a string, or a number. */
static void fz_push_form_item(lua_State *L, fz_in *in) {
  unsigned kind = fz_byte(in) % 8;
  size_t n;
  const uint8_t *p = fz_str(in, &n);
  if (kind == 6) lua_pushinteger(L, (lua_Integer)(int64_t)(n ? p[0] * 1000003LL - 77777 : 0));
  else if (kind == 7) lua_pushnumber(L, n ? (lua_Number)p[0] / 7.0 : 0.5);
  else lua_pushlstring(L, (const char *)p, n);
}

static void fz_form(lua_State *L, fz_in *in) {
  int nfields = (int)(fz_byte(in) % 10);
  lua_createtable(L, nfields, 0);
  int list = lua_gettop(L);
  for (int i = 1; i <= nfields; i++) {
    lua_createtable(L, 2, 0);
    fz_push_form_item(L, in);
    lua_rawseti(L, -2, 1);
    fz_push_form_item(L, in);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, list, i);
  }
  fz_core_fn(L, "urlencode_form");
  lua_pushvalue(L, list);
  fz_call(L, 1, 1, "urlencode_form");
  size_t n;
  const uint8_t *s = (const uint8_t *)lua_tolstring(L, -1, &n);
  FZ_CHECK(s, "urlencode_form did not return a string");
  uint8_t *buf = malloc(n + 1);
  size_t pos = 0;
  for (int i = 1; i <= nfields; i++) {
    FZ_CHECK(pos <= n, "form: field %d missing", i);
    const uint8_t *end = memchr(s + pos, '&', n - pos);
    size_t flen = end ? (size_t)(end - (s + pos)) : n - pos;
    const uint8_t *eq = memchr(s + pos, '=', flen);
    FZ_CHECK(eq, "form: field %d has no '='", i);
    for (int side = 0; side < 2; side++) {
      const uint8_t *a = side ? eq + 1 : s + pos;
      size_t alen = side ? (size_t)(s + pos + flen - (eq + 1)) : (size_t)(eq - (s + pos));
      size_t dn = fz_form_decode(a, alen, buf);
      lua_rawgeti(L, list, i);
      lua_rawgeti(L, -1, side + 1);
      size_t wn;
      const char *w = lua_tolstring(L, -1, &wn); /* a copy's number becomes its string */
      FZ_CHECK(fz_eq(buf, dn, w, wn), "form: field %d %s does not decode back", i, side ? "value" : "name");
      lua_pop(L, 2);
    }
    pos += flen + 1;
  }
  FZ_CHECK(nfields == 0 ? n == 0 : pos == n + 1, "form: bytes after the last field");
  free(buf);
}

/* Reads the quoted string at p (after its opening quote) both ways: raw up
 * to the next quote, and RFC 7230 with quoted-pairs. They must end at the
 * same quote; *value gets the reading that equals want, if any. */
static const uint8_t *fz_quoted(const uint8_t *p, const uint8_t *end, const uint8_t *want,
                                size_t want_n, const char *what, int part) {
  const uint8_t *raw_end = memchr(p, '"', (size_t)(end - p));
  FZ_CHECK(raw_end, "multipart part %d: %s quote not closed", part, what);
  uint8_t unq[300];
  size_t un = 0;
  const uint8_t *q = p;
  while (q < end && *q != '"') {
    if (*q == '\\' && q + 1 < end) q++;
    if (un < sizeof unq) unq[un++] = *q;
    q++;
  }
  FZ_CHECK(q == raw_end, "multipart part %d: %s is an ambiguous quoted string (a reader that "
           "honours backslash escapes ends it elsewhere)", part, what);
  FZ_CHECK(fz_eq(p, (size_t)(raw_end - p), want, want_n) || fz_eq(unq, un, want, want_n),
           "multipart part %d: %s does not read back", part, what);
  return raw_end + 1;
}

static const uint8_t *fz_find(const uint8_t *h, size_t hn, const void *n, size_t nn) {
  if (nn > hn) return NULL;
  for (size_t i = 0; i + nn <= hn; i++)
    if (memcmp(h + i, n, nn) == 0) return h + i;
  return NULL;
}

static void fz_multipart(lua_State *L, fz_in *in, int given) {
  char boundary[80];
  size_t bn = 0;
  if (given) {
    static const char bchars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=?";
    size_t n;
    const uint8_t *p = fz_str(in, &n);
    if (n > 70) n = 70;
    for (size_t i = 0; i < n; i++) boundary[bn++] = bchars[p[i] % (sizeof bchars - 1)];
    if (bn == 0) boundary[bn++] = 'b';
  }
  boundary[bn] = 0;
  int nparts = (int)(fz_byte(in) % MAX_PARTS);
  fz_part parts[MAX_PARTS];
  memset(parts, 0, sizeof parts);
  int misuse = 0;
  fz_core_fn(L, "multipart_body");
  lua_createtable(L, nparts, 0);
  for (int i = 0; i < nparts; i++) {
    fz_part *pt = &parts[i];
    unsigned kind = fz_byte(in);
    pt->name = fz_str(in, &pt->name_n);
    pt->content = fz_str(in, &pt->content_n);
    pt->is_value = kind & 1;
    pt->has_filename = (kind & 2) != 0;
    pt->has_ctype = (kind & 4) != 0;
    if (pt->has_filename) pt->filename = fz_str(in, &pt->filename_n);
    if (pt->has_ctype) pt->ctype = fz_str(in, &pt->ctype_n);
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, (const char *)pt->name, pt->name_n);
    lua_setfield(L, -2, "name");
    lua_pushlstring(L, (const char *)pt->content, pt->content_n);
    lua_setfield(L, -2, pt->is_value ? "value" : "data");
    if (pt->has_filename) {
      lua_pushlstring(L, (const char *)pt->filename, pt->filename_n);
      lua_setfield(L, -2, "filename");
    }
    if (pt->has_ctype) {
      lua_pushlstring(L, (const char *)pt->ctype, pt->ctype_n);
      lua_setfield(L, -2, "content_type");
    }
    if (kind & 8) { /* both value and data: misuse */
      lua_pushliteral(L, "x");
      lua_setfield(L, -2, pt->is_value ? "data" : "value");
      misuse = 1;
    }
    lua_rawseti(L, -2, i + 1);
    /* a quoted name or filename refuses '"', '\\' (it could escape the
     * closing quote) and every control character (csrc/http.c) */
    misuse |= fz_bad_quoted(pt->name, pt->name_n) | fz_bad_quoted(pt->filename, pt->filename_n);
    for (size_t k = 0; k < pt->ctype_n; k++) misuse |= strchr("\r\n", pt->ctype[k]) != NULL;
    if (pt->has_ctype && pt->ctype_n == 0) misuse = 1;
    if (pt->is_value && (pt->has_filename || pt->has_ctype)) misuse = 1;
    if (given && fz_find(pt->content, pt->content_n, "--", 2) &&
        fz_find(pt->content, pt->content_n, boundary, bn))
      misuse = 1; /* maybe: the boundary may occur; a raise is allowed then */
  }
  if (given) lua_pushlstring(L, boundary, bn);
  else lua_pushnil(L);
  if (!fz_try(L, 2, 2)) {
    FZ_CHECK(misuse, "multipart_body raised on valid parts: %s", lua_tostring(L, -1));
    return;
  }
  size_t n;
  const uint8_t *body = (const uint8_t *)lua_tolstring(L, -2, &n);
  FZ_CHECK(body, "multipart_body returned no body");
  const char *ct = lua_tostring(L, -1);
  FZ_CHECK(ct && strncmp(ct, "multipart/form-data; boundary=", 30) == 0, "multipart content type");
  const char *b = ct + 30;
  size_t blen = strlen(b);
  if (given) FZ_CHECK(strcmp(b, boundary) == 0, "multipart: not the given boundary");
  char delim[90];
  int dl = snprintf(delim, sizeof delim, "\r\n--%s", b);
  /* walk the parts: the body starts with "--b" (no CRLF before it) */
  FZ_CHECK(n >= (size_t)dl - 2 && memcmp(body, delim + 2, (size_t)dl - 2) == 0,
           "multipart: body does not start with the delimiter");
  const uint8_t *p = body + dl - 2, *end = body + n;
  for (int i = 0; i < nparts; i++) {
    fz_part *pt = &parts[i];
    int part = i + 1;
    FZ_CHECK(end - p >= 2 && p[0] == '\r' && p[1] == '\n', "multipart part %d: no CRLF after the delimiter", part);
    p += 2;
    const uint8_t *hend = fz_find(p, (size_t)(end - p), "\r\n\r\n", 4);
    FZ_CHECK(hend, "multipart part %d: headers not ended", part);
    static const char cd[] = "Content-Disposition: form-data; name=\"";
    FZ_CHECK((size_t)(hend - p) >= sizeof cd - 1 && memcmp(p, cd, sizeof cd - 1) == 0,
             "multipart part %d: no Content-Disposition", part);
    const uint8_t *q = fz_quoted(p + sizeof cd - 1, hend, pt->name, pt->name_n, "name", part);
    if (pt->has_filename) {
      FZ_CHECK(hend - q >= 12 && memcmp(q, "; filename=\"", 12) == 0, "multipart part %d: no filename", part);
      q = fz_quoted(q + 12, hend, pt->filename, pt->filename_n, "filename", part);
    }
    if (!pt->is_value) {
      const char *want = pt->has_ctype ? (const char *)pt->ctype : "application/octet-stream";
      size_t wn = pt->has_ctype ? pt->ctype_n : strlen(want);
      FZ_CHECK(hend - q >= 16 && memcmp(q, "\r\nContent-Type: ", 16) == 0, "multipart part %d: no Content-Type", part);
      q += 16;
      FZ_CHECK(fz_eq(q, (size_t)(hend - q), want, wn), "multipart part %d: Content-Type differs", part);
      q = hend;
    }
    FZ_CHECK(q == hend, "multipart part %d: unexpected header bytes", part);
    const uint8_t *c = hend + 4;
    const uint8_t *next = fz_find(c, (size_t)(end - c), delim, (size_t)dl);
    FZ_CHECK(next, "multipart part %d: no closing delimiter", part);
    FZ_CHECK(fz_eq(c, (size_t)(next - c), pt->content, pt->content_n),
             "multipart part %d: content differs (a delimiter inside it?)", part);
    p = next + dl;
  }
  FZ_CHECK(end - p == 4 && memcmp(p, "--\r\n", 4) == 0, "multipart: bad close delimiter");
  (void)blen;
}

static void fz_one(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  fz_in in = { data, size };
  unsigned mode = fz_byte(&in);
  if (mode % 2 == 0) fz_form(L, &in);
  else fz_multipart(L, &in, (mode & 2) != 0);
  fz_done(L);
}
