/*
 * ref_json.h - a strict RFC 8259 JSON reader for the JSON writer's
 * harness: it rejects what lenient readers (lua-cjson among them) let pass,
 * such as invalid UTF-8 or raw control bytes in strings, and keeps object
 * keys in order and numbers as their text, so nothing is lost to a double.
 */
#ifndef KSMS_FUZZ_REF_JSON_H
#define KSMS_FUZZ_REF_JSON_H

#include "harness.h"

enum { FJ_NULL, FJ_FALSE, FJ_TRUE, FJ_NUMBER, FJ_STRING, FJ_ARRAY, FJ_OBJECT };

typedef struct fj_node {
  int type;
  char *s;           /* string bytes (decoded) or number text */
  size_t n;
  size_t count;      /* array items or object members */
  char **keys;
  size_t *key_n;
  struct fj_node *items;
} fj_node;

typedef struct fj_reader {
  const uint8_t *p, *end;
  const char *why;   /* set on the first error */
  int depth;
} fj_reader;

static void fj_free(fj_node *v) {
  free(v->s);
  for (size_t i = 0; i < v->count; i++) {
    if (v->keys) free(v->keys[i]);
    fj_free(&v->items[i]);
  }
  free(v->keys);
  free(v->key_n);
  free(v->items);
  memset(v, 0, sizeof *v);
}

static int fj_err(fj_reader *r, const char *why) {
  if (!r->why) r->why = why;
  return 0;
}

static void fj_ws(fj_reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static void fj_putc(char **s, size_t *n, size_t *cap, uint8_t c) {
  if (*n + 1 > *cap) {
    *cap = *cap * 2 + 16;
    *s = realloc(*s, *cap);
    if (!*s) abort();
  }
  (*s)[(*n)++] = (char)c;
}

static int fj_hex4(fj_reader *r, uint32_t *v) {
  if (r->end - r->p < 4) return fj_err(r, "short \\u escape");
  *v = 0;
  for (int i = 0; i < 4; i++) {
    uint8_t c = *r->p++;
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return fj_err(r, "bad \\u escape");
    *v = *v << 4 | (uint32_t)d;
  }
  return 1;
}

static int fj_string(fj_reader *r, char **out, size_t *out_n) {
  size_t n = 0, cap = 0;
  char *s = NULL;
  r->p++; /* the opening quote */
  for (;;) {
    if (r->p >= r->end) { free(s); return fj_err(r, "unterminated string"); }
    uint8_t c = *r->p;
    if (c == '"') { r->p++; break; }
    if (c < 0x20) { free(s); return fj_err(r, "raw control byte in a string"); }
    if (c == '\\') {
      if (r->end - r->p < 2) { free(s); return fj_err(r, "unterminated escape"); }
      uint8_t e = r->p[1];
      r->p += 2;
      int plain = e == '"' ? '"' : e == '\\' ? '\\' : e == '/' ? '/' : e == 'b' ? '\b'
                : e == 'f' ? '\f' : e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : -1;
      if (plain >= 0) {
        fj_putc(&s, &n, &cap, (uint8_t)plain);
        continue;
      }
      if (e != 'u') { free(s); return fj_err(r, "bad escape"); }
      uint32_t cp;
      if (!fj_hex4(r, &cp)) { free(s); return 0; }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        uint32_t lo;
        if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u') { free(s); return fj_err(r, "lone surrogate"); }
        r->p += 2;
        if (!fj_hex4(r, &lo) || lo < 0xDC00 || lo > 0xDFFF) { free(s); return fj_err(r, "bad surrogate pair"); }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        free(s);
        return fj_err(r, "lone surrogate");
      }
      if (cp < 0x80) fj_putc(&s, &n, &cap, (uint8_t)cp);
      else if (cp < 0x800) {
        fj_putc(&s, &n, &cap, (uint8_t)(0xC0 | cp >> 6));
        fj_putc(&s, &n, &cap, (uint8_t)(0x80 | (cp & 0x3F)));
      } else if (cp < 0x10000) {
        fj_putc(&s, &n, &cap, (uint8_t)(0xE0 | cp >> 12));
        fj_putc(&s, &n, &cap, (uint8_t)(0x80 | (cp >> 6 & 0x3F)));
        fj_putc(&s, &n, &cap, (uint8_t)(0x80 | (cp & 0x3F)));
      } else {
        fj_putc(&s, &n, &cap, (uint8_t)(0xF0 | cp >> 18));
        fj_putc(&s, &n, &cap, (uint8_t)(0x80 | (cp >> 12 & 0x3F)));
        fj_putc(&s, &n, &cap, (uint8_t)(0x80 | (cp >> 6 & 0x3F)));
        fj_putc(&s, &n, &cap, (uint8_t)(0x80 | (cp & 0x3F)));
      }
      continue;
    }
    uint32_t cp;
    size_t k = fz_utf8_seq(r->p, (size_t)(r->end - r->p), &cp);
    if (!k) { free(s); return fj_err(r, "invalid UTF-8 in a string"); }
    for (size_t i = 0; i < k; i++) fj_putc(&s, &n, &cap, r->p[i]);
    r->p += k;
  }
  *out = s ? s : calloc(1, 1);
  *out_n = n;
  return 1;
}

static int fj_digits(fj_reader *r) {
  const uint8_t *start = r->p;
  while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
  return r->p > start;
}

static int fj_value(fj_reader *r, fj_node *v);

static int fj_number(fj_reader *r, fj_node *v) {
  const uint8_t *start = r->p;
  if (*r->p == '-') r->p++;
  if (r->p < r->end && *r->p == '0') r->p++;
  else if (!fj_digits(r)) return fj_err(r, "bad number");
  if (r->p < r->end && *r->p == '.') {
    r->p++;
    if (!fj_digits(r)) return fj_err(r, "bad fraction");
  }
  if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
    r->p++;
    if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
    if (!fj_digits(r)) return fj_err(r, "bad exponent");
  }
  v->type = FJ_NUMBER;
  v->n = (size_t)(r->p - start);
  v->s = malloc(v->n + 1);
  memcpy(v->s, start, v->n);
  v->s[v->n] = 0;
  return 1;
}

static int fj_add(fj_node *v, char *key, size_t key_n) {
  v->items = realloc(v->items, (v->count + 1) * sizeof *v->items);
  if (v->type == FJ_OBJECT) {
    v->keys = realloc(v->keys, (v->count + 1) * sizeof *v->keys);
    v->key_n = realloc(v->key_n, (v->count + 1) * sizeof *v->key_n);
    v->keys[v->count] = key;
    v->key_n[v->count] = key_n;
  }
  memset(&v->items[v->count], 0, sizeof *v->items);
  v->count++;
  return 1;
}

static int fj_container(fj_reader *r, fj_node *v, int object) {
  uint8_t close = object ? '}' : ']';
  v->type = object ? FJ_OBJECT : FJ_ARRAY;
  if (++r->depth > 64) return fj_err(r, "too deep");
  r->p++;
  fj_ws(r);
  if (r->p < r->end && *r->p == close) { r->p++; r->depth--; return 1; }
  for (;;) {
    char *key = NULL;
    size_t key_n = 0;
    if (object) {
      fj_ws(r);
      if (r->p >= r->end || *r->p != '"') return fj_err(r, "object key is not a string");
      if (!fj_string(r, &key, &key_n)) return 0;
      fj_ws(r);
      if (r->p >= r->end || *r->p != ':') { free(key); return fj_err(r, "missing ':'"); }
      r->p++;
    }
    fj_add(v, key, key_n);
    if (!fj_value(r, &v->items[v->count - 1])) return 0;
    fj_ws(r);
    if (r->p < r->end && *r->p == ',') { r->p++; continue; }
    if (r->p < r->end && *r->p == close) { r->p++; r->depth--; return 1; }
    return fj_err(r, "missing ',' or close");
  }
}

static int fj_lit(fj_reader *r, const char *lit, fj_node *v, int type) {
  size_t n = strlen(lit);
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n)) return fj_err(r, "bad literal");
  r->p += n;
  v->type = type;
  return 1;
}

static int fj_value(fj_reader *r, fj_node *v) {
  fj_ws(r);
  if (r->p >= r->end) return fj_err(r, "value expected");
  switch (*r->p) {
    case '{': return fj_container(r, v, 1);
    case '[': return fj_container(r, v, 0);
    case '"': v->type = FJ_STRING; return fj_string(r, &v->s, &v->n);
    case 't': return fj_lit(r, "true", v, FJ_TRUE);
    case 'f': return fj_lit(r, "false", v, FJ_FALSE);
    case 'n': return fj_lit(r, "null", v, FJ_NULL);
    default:
      if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9')) return fj_number(r, v);
      return fj_err(r, "unexpected byte");
  }
}

/* Parses the whole of s; NULL or the reason it is not JSON. */
static const char *fj_parse(const uint8_t *s, size_t n, fj_node *v) {
  fj_reader r = { s, s + n, NULL, 0 };
  memset(v, 0, sizeof *v);
  if (fj_value(&r, v)) {
    fj_ws(&r);
    if (r.p != r.end) fj_err(&r, "bytes after the value");
  }
  return r.why;
}

#endif
