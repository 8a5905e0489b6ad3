/*
 * fuzz_json - the ordered JSON writer (core.json_schema, json_object,
 * oneshot_json, oneshot_frame) with tables built from the input.
 *
 * Input: the key count, the mode (json_object, or a whole OneShot message
 * with a table, string or no Body), the keys (ASCII with quotes, controls
 * and backslashes: the programmer's schema), a method name, then per key a
 * type and value: absent, a string (any bytes), an integer, a float (any 64
 * bits), true, false, cjson.null, or misuse (a table value, a key the schema
 * lacks).
 *
 * Invariants: misuse (and NaN or infinity) never succeeds; a string that is
 * not UTF-8 gives nil plus a ksms error, never output; everything else
 * gives strict JSON (ref_json.h) with the schema's keys in order and every
 * value back exactly (a float as the same double, an integer as its
 * decimal), which lua-cjson also reads back; oneshot_frame is
 * "Content-Length:N" CRLF and that JSON compressed.
 */
#include <math.h>
#include "ref_json.h"
#include "ref_zlib.h"

#define MAX_KEYS 16

enum { V_ABSENT, V_STRING, V_INT, V_FLOAT, V_TRUE, V_FALSE, V_NULL, V_MISUSE };

typedef struct fz_field {
  char key[40];
  size_t key_n;
  int type;
  const uint8_t *s;
  size_t n;
  long long i;
  double d;
} fz_field;

static int fz_same_bytes(const char *a, size_t an, const void *b, size_t bn) {
  return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* The JSON value v must be what field f holds. */
static void fz_check_value(const fj_node *v, const fz_field *f) {
  char want[32];
  switch (f->type) {
    case V_STRING:
      FZ_CHECK(v->type == FJ_STRING && fz_same_bytes(v->s, v->n, f->s, f->n),
               "field '%s': string not written back exactly", f->key);
      break;
    case V_INT:
      snprintf(want, sizeof want, "%lld", f->i);
      FZ_CHECK(v->type == FJ_NUMBER && strcmp(v->s, want) == 0, "field '%s': %s written as %s",
               f->key, want, v->type == FJ_NUMBER ? v->s : "a non-number");
      break;
    case V_FLOAT:
      FZ_CHECK(v->type == FJ_NUMBER, "field '%s': float not written as a number", f->key);
      FZ_CHECK(strtod(v->s, NULL) == f->d, "field '%s': %.17g written as %s (precision lost)",
               f->key, f->d, v->s);
      break;
    case V_TRUE: FZ_CHECK(v->type == FJ_TRUE, "field '%s': true not written as true", f->key); break;
    case V_FALSE: FZ_CHECK(v->type == FJ_FALSE, "field '%s': false not written as false", f->key); break;
    case V_NULL: FZ_CHECK(v->type == FJ_NULL, "field '%s': null not written as null", f->key); break;
    default: fz_fail("field '%s': unexpected type", f->key);
  }
}

/* The object v must hold the present fields, in schema order. */
static void fz_check_object(const fj_node *v, const fz_field *fields, int nkeys) {
  FZ_CHECK(v->type == FJ_OBJECT, "body is not a JSON object");
  size_t k = 0;
  for (int i = 0; i < nkeys; i++) {
    if (fields[i].type == V_ABSENT) continue;
    FZ_CHECK(k < v->count, "field '%s' missing from the output", fields[i].key);
    FZ_CHECK(fz_same_bytes(v->keys[k], v->key_n[k], fields[i].key, fields[i].key_n),
             "member %zu is not '%s' (schema order)", k + 1, fields[i].key);
    fz_check_value(&v->items[k], &fields[i]);
    k++;
  }
  FZ_CHECK(k == v->count, "output has %zu members, expected %zu", v->count, k);
}

/* lua-cjson must read the body back too (the value at the top). */
static void fz_check_cjson(lua_State *L, const fz_field *fields, int nkeys) {
  for (int i = 0; i < nkeys; i++) {
    const fz_field *f = &fields[i];
    if (f->type == V_ABSENT) continue;
    lua_pushlstring(L, f->key, f->key_n);
    lua_rawget(L, -2);
    switch (f->type) {
      case V_STRING: {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        FZ_CHECK(s && fz_same_bytes(s, n, f->s, f->n), "cjson: field '%s' differs", f->key);
        break;
      }
      case V_INT:
        if (f->i > -(1LL << 53) && f->i < (1LL << 53))
          FZ_CHECK(lua_tonumber(L, -1) == (lua_Number)f->i, "cjson: field '%s' differs", f->key);
        break;
      case V_FLOAT:
        FZ_CHECK(lua_tonumber(L, -1) == f->d, "cjson: field '%s' reads back as %.17g, not %.17g",
                 f->key, (double)lua_tonumber(L, -1), f->d);
        break;
      case V_TRUE: case V_FALSE:
        FZ_CHECK(lua_isboolean(L, -1) && lua_toboolean(L, -1) == (f->type == V_TRUE),
                 "cjson: field '%s' differs", f->key);
        break;
      case V_NULL:
        FZ_CHECK(lua_islightuserdata(L, -1) && !lua_touserdata(L, -1), "cjson: field '%s' not null",
                 f->key);
        break;
    }
    lua_pop(L, 1);
  }
}

static void fz_cjson_decode(lua_State *L, const char *s, size_t n) {
  FZ_CHECK(fz_cjson_ref != LUA_NOREF, "lua-cjson is needed");
  lua_rawgeti(L, LUA_REGISTRYINDEX, fz_cjson_ref);
  lua_getfield(L, -1, "decode");
  lua_remove(L, -2);
  lua_pushlstring(L, s, n);
  fz_call(L, 1, 1, "cjson.decode of the writer's output");
}

static void fz_one(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  fz_in in = { data, size };
  int nkeys = (int)(fz_byte(&in) % MAX_KEYS) + 1;
  unsigned mode = fz_byte(&in) % 4;  /* 0 object, 1 message+table, 2 message+string, 3 message */
  fz_field f[MAX_KEYS];
  memset(f, 0, sizeof f);
  for (int i = 0; i < nkeys; i++) {
    size_t n;
    const uint8_t *k = fz_str(&in, &n);
    if (n > 24) n = 24;
    for (size_t j = 0; j < n; j++) f[i].key[j] = (char)(k[j] & 0x7F);
    f[i].key_n = n;
    /* keys are unique in a schema: lengthen a repeat until it is new */
    for (int j = 0; j < i; j++)
      if (fz_same_bytes(f[j].key, f[j].key_n, f[i].key, f[i].key_n)) {
        f[i].key[f[i].key_n++] = '#';
        j = -1;
      }
  }
  size_t method_n;
  const uint8_t *method = fz_str(&in, &method_n);
  size_t str_body_n;
  const uint8_t *str_body = mode == 2 ? fz_str(&in, &str_body_n) : NULL;
  int misuse = 0, bad_field = 0;

  /* the schema */
  fz_core_fn(L, "json_schema");
  lua_createtable(L, nkeys, 0);
  for (int i = 0; i < nkeys; i++) {
    lua_pushlstring(L, f[i].key, f[i].key_n);
    lua_rawseti(L, -2, i + 1);
  }
  fz_call(L, 1, 1, "json_schema");
  int schema = lua_gettop(L);

  /* the body */
  lua_newtable(L);
  int body = lua_gettop(L);
  for (int i = 0; i < nkeys && in.n; i++) {
    f[i].type = (int)(fz_byte(&in) % 8);
    uint64_t bits = 0;
    switch (f[i].type) {
      case V_ABSENT: continue;
      case V_STRING:
        f[i].s = fz_str(&in, &f[i].n);
        if (fz_utf8_invalid_at(f[i].s, f[i].n) != (size_t)-1) bad_field = 1;
        lua_pushlstring(L, (const char *)f[i].s, f[i].n);
        break;
      case V_INT:
        for (int b = 0; b < 8; b++) bits = bits << 8 | fz_byte(&in);
        f[i].i = (long long)bits;
        lua_pushinteger(L, (lua_Integer)f[i].i);
        break;
      case V_FLOAT:
        for (int b = 0; b < 8; b++) bits = bits << 8 | fz_byte(&in);
        memcpy(&f[i].d, &bits, sizeof f[i].d);
        if (!isfinite(f[i].d)) misuse = 1;
        lua_pushnumber(L, (lua_Number)f[i].d);
        break;
      case V_TRUE: case V_FALSE: lua_pushboolean(L, f[i].type == V_TRUE); break;
      case V_NULL: lua_pushlightuserdata(L, NULL); break;
      case V_MISUSE:
        misuse = 1;
        if (fz_byte(&in) & 1) {
          lua_newtable(L);
        } else {
          lua_pushboolean(L, 1);
          lua_setfield(L, body, "NotInTheSchema\x01");
          continue;
        }
        break;
    }
    lua_pushlstring(L, f[i].key, f[i].key_n);
    lua_insert(L, -2);
    lua_rawset(L, body);
  }
  if (mode >= 2) { /* the table is not written: a string or no Body */
    for (int i = 0; i < nkeys; i++) f[i].type = V_ABSENT;
    misuse = bad_field = 0;
  }
  int bad_utf8 = bad_field ||
                 (mode >= 1 && fz_utf8_invalid_at(method, method_n) != (size_t)-1) ||
                 (mode == 2 && fz_utf8_invalid_at(str_body, str_body_n) != (size_t)-1);

  /* the call */
  if (mode == 0) {
    fz_core_fn(L, "json_object");
    lua_pushvalue(L, body);
    lua_pushvalue(L, schema);
  } else {
    fz_core_fn(L, "oneshot_json");
    lua_pushlstring(L, (const char *)method, method_n);
    if (mode == 1) lua_pushvalue(L, body);
    else if (mode == 2) lua_pushlstring(L, (const char *)str_body, str_body_n);
    else lua_pushnil(L);
    lua_pushvalue(L, schema);
  }
  int ran = fz_try(L, mode == 0 ? 2 : 3, 2);
  if (misuse) {
    FZ_CHECK(!ran || lua_isnil(L, -2), "the writer accepted a value it cannot write");
    fz_done(L);
    return;
  }
  FZ_CHECK(ran, "the writer raised: %s", lua_tostring(L, -1));
  if (bad_utf8) {
    FZ_CHECK(lua_isnil(L, -2), "the writer wrote a string that is not UTF-8 (the output is not JSON)");
    fz_check_error(L, -1, NULL, "json writer");
    fz_done(L);
    return;
  }
  size_t out_n;
  const char *out = lua_tolstring(L, -2, &out_n);
  FZ_CHECK(out && lua_isnil(L, -1), "the writer refused valid input");
  fj_node doc;
  const char *why = fj_parse((const uint8_t *)out, out_n, &doc);
  FZ_CHECK(!why, "the writer's output is not JSON: %s", why);
  if (mode == 0) {
    fz_check_object(&doc, f, nkeys);
    fz_cjson_decode(L, out, out_n);
    fz_check_cjson(L, f, nkeys);
  } else {
    FZ_CHECK(doc.type == FJ_OBJECT && doc.count >= 1 && fz_same_bytes(doc.keys[0], doc.key_n[0], "Header", 6),
             "message does not start with Header");
    const fj_node *h = &doc.items[0];
    FZ_CHECK(h->type == FJ_OBJECT && h->count == 1 && fz_same_bytes(h->keys[0], h->key_n[0], "Method", 6) &&
             h->items[0].type == FJ_STRING && fz_same_bytes(h->items[0].s, h->items[0].n, method, method_n),
             "Header is not {\"Method\": method}");
    FZ_CHECK(doc.count == (mode == 3 ? 1u : 2u), "message has %zu members", doc.count);
    if (mode != 3) {
      FZ_CHECK(fz_same_bytes(doc.keys[1], doc.key_n[1], "Body", 4), "second member is not Body");
      if (mode == 1) {
        fz_check_object(&doc.items[1], f, nkeys);
        fz_cjson_decode(L, out, out_n);
        lua_getfield(L, -1, "Body");
        fz_check_cjson(L, f, nkeys);
        lua_pop(L, 2);
      } else {
        FZ_CHECK(doc.items[1].type == FJ_STRING &&
                 fz_same_bytes(doc.items[1].s, doc.items[1].n, str_body, str_body_n),
                 "string Body not written back exactly");
      }
    }
    /* oneshot_frame is the same text, framed and compressed */
    fz_core_fn(L, "oneshot_frame");
    lua_pushlstring(L, (const char *)method, method_n);
    if (mode == 1) lua_pushvalue(L, body);
    else if (mode == 2) lua_pushlstring(L, (const char *)str_body, str_body_n);
    else lua_pushnil(L);
    lua_pushvalue(L, schema);
    fz_call(L, 3, 1, "oneshot_frame");
    size_t fn;
    const char *fr = lua_tolstring(L, -1, &fn);
    unsigned long announced = 0;
    int hl = 0;
    FZ_CHECK(fr && sscanf(fr, "Content-Length:%lu\r\n%n", &announced, &hl) == 1 && hl > 0 &&
             announced == fn - (size_t)hl, "oneshot_frame header does not match its body");
    uint8_t *plain;
    size_t pn;
    FZ_CHECK(!fz_ref_inflate((const uint8_t *)fr + hl, announced, out_n + 16, &plain, &pn) &&
             fz_same_bytes(out, out_n, plain, pn), "oneshot_frame does not hold oneshot_json's text");
    free(plain);
  }
  fj_free(&doc);
  fz_done(L);
  return;
}
