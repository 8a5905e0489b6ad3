/*
 * json.c - an ordered, compact JSON writer for OneShot messages (prefix
 * json_). The provider's documents print {"Header":{"Method":...},"Body":...}
 * with Body keys in table order, compact, UTF-8 as is and '/' unescaped;
 * writing exactly that reproduces the documented frames byte for byte.
 * Key order comes from a compiled schema (core.json_schema, built once per
 * method by ksms.oneshot.schema), so this file knows nothing about methods.
 * Decoding is lua-cjson's job.
 *
 * What it writes is always JSON: a string that is not valid UTF-8 (the
 * method, a string Body or a field's value) gives nil, err (invalid_input,
 * "bad_utf8", naming the field and the byte, never quoting the value; a
 * caller that echoes a peer's bytes may call it a protocol error), and a
 * float is written with the fewest digits (15, 16 or 17) that read back as
 * the same double. Programmer errors (an unknown field, a table value, a
 * number that is not finite) raise.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ksms.h"

#define JSON_SCHEMA_MT "ksms.core.json_schema"

/* A key order compiled once: the '"Key":' text of every key, ready to copy,
 * and (as the userdata's user value) a table mapping each key to its
 * position, so encoding walks the body once instead of probing every key. */
typedef struct json_schema {
  int count;
  size_t *offset;     /* count + 1 offsets into text */
  buf_t text;
} json_schema;

static const char json_hex[] = "0123456789abcdef";

/* What a byte needs: 0 nothing, 1 an escape (controls, '"' and '\\'),
 * 2 a check that the UTF-8 sequence it starts is well-formed. */
#define JSON_ROW(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const unsigned char json_needs_escape[256] = {
    JSON_ROW(1), JSON_ROW(1),
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    JSON_ROW(0), JSON_ROW(0),
    JSON_ROW(2), JSON_ROW(2), JSON_ROW(2), JSON_ROW(2),
    JSON_ROW(2), JSON_ROW(2), JSON_ROW(2), JSON_ROW(2),
};

/* Appends s as a JSON string. Returns 0, or the 1-based offset of the
 * first byte that is not well-formed UTF-8; then nothing is appended. */
static size_t json_string(lua_State *L, buf_t *b, const char *s, size_t n) {
  /* Worst case every byte becomes \u00XX. */
  unsigned char *o = buf_reserve(L, b, n * 6 + 2);
  unsigned char *start = o;
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  *o++ = '"';
  while (p < end) {
    /* Copy the run of bytes that need nothing, then deal with one. */
    const unsigned char *run = p;
    while (p < end && !json_needs_escape[*p]) p++;
    memcpy(o, run, (size_t)(p - run));
    o += p - run;
    if (p == end) break;
    if (json_needs_escape[*p] == 2) {
      uint32_t cp;
      size_t len = text_utf8_decode(p, (size_t)(end - p), &cp);
      if (len == 0) return (size_t)(p - (const unsigned char *)s) + 1;
      memcpy(o, p, len);
      o += len;
      p += len;
      continue;
    }
    unsigned char c = *p++;
    *o++ = '\\';
    switch (c) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '\n': *o++ = 'n'; break;
      case '\r': *o++ = 'r'; break;
      case '\t': *o++ = 't'; break;
      case '\b': *o++ = 'b'; break;
      case '\f': *o++ = 'f'; break;
      default:
        *o++ = 'u'; *o++ = '0'; *o++ = '0';
        *o++ = (unsigned char)json_hex[c >> 4];
        *o++ = (unsigned char)json_hex[c & 15];
    }
  }
  *o++ = '"';
  b->len += (size_t)(o - start);
  return 0;
}

/* Writes finite v (not written as an integer) with the fewest of 15, 16, 17
 * significant digits that read back as v: 0.1 stays "0.1", 1/3 needs 16. */
static void json_double(lua_State *L, buf_t *b, double v) {
  char num[40];
  int len = 0;
  for (int digits = 15; digits <= 17; digits++) {
    len = snprintf(num, sizeof num, "%.*g", digits, v);
    if (strtod(num, NULL) == v) break;
  }
  /* Under a locale with a decimal comma printf writes one; JSON has '.'. */
  for (int i = 0; i < len; i++)
    if (!(num[i] >= '0' && num[i] <= '9') && !strchr("+-eE", num[i])) num[i] = '.';
  buf_append(L, b, num, (size_t)len);
}

/* Decimal without printf: message fields are mostly small integers. */
static void json_integer(lua_State *L, buf_t *b, long long v) {
  char tmp[24];
  char *end = tmp + sizeof tmp, *p = end;
  unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) *--p = '-';
  buf_append(L, b, p, (size_t)(end - p));
}

static void json_literal(lua_State *L, buf_t *b, const char *s) {
  buf_append(L, b, s, strlen(s));
}

/* Why json_value could not write a string: not raised but returned. */
static const char json_bad_utf8[] = "is not valid UTF-8";

/* Writes the value at index idx. Returns NULL, or why it cannot be written
 * (the caller names the field in the error it raises), or json_bad_utf8
 * with the 1-based offset of the bad byte in *bad_at. */
static const char *json_value(lua_State *L, buf_t *b, int idx, size_t *bad_at) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      *bad_at = json_string(L, b, s, n);
      return *bad_at ? json_bad_utf8 : NULL;
    }
    case LUA_TNUMBER: {
      lua_Number v = lua_tonumber(L, idx);
      int negative_zero = v == 0 && signbit(v);
      if (lua_isinteger(L, idx) && !negative_zero) {
        json_integer(L, b, (long long)lua_tointeger(L, idx));
        return NULL;
      }
      if (!isfinite(v)) return "is not a finite number";
      if (negative_zero) {
        json_literal(L, b, "-0");
        return NULL;
      }
      /* 4.0 (what cjson gives Lua 5.4 for 4) is written as 4. */
      if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        json_integer(L, b, (long long)v);
        return NULL;
      }
      json_double(L, b, (double)v);
      return NULL;
    }
    case LUA_TBOOLEAN:
      json_literal(L, b, lua_toboolean(L, idx) ? "true" : "false");
      return NULL;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) { /* cjson.null */
        json_literal(L, b, "null");
        return NULL;
      }
      /* fall through */
    default:
      return "has a value that is not a string, number or boolean "
             "(encode nested data as a JSON string)";
  }
}

/* Where a string that is not UTF-8 was met, for the nil, err it gives. */
typedef struct json_bad {
  char what[160];
} json_bad;

/* Writes the table at idx as an object whose keys follow the compiled
 * schema at schema_idx; absent keys are left out. A key the schema does not
 * list is a programmer error (a typo would otherwise vanish silently).
 * Returns 0, or -1 with *bad filled when a value is not valid UTF-8. */
static int json_object(lua_State *L, buf_t *b, int idx, int schema_idx,
                       const char *what, json_bad *bad) {
  idx = lua_absindex(L, idx);
  json_schema *sc = luaL_checkudata(L, schema_idx, JSON_SCHEMA_MT);
  lua_getuservalue(L, schema_idx);                 /* key -> position */
  int positions = lua_gettop(L);
  luaL_checkstack(L, sc->count + 4, "json: schema too large");
  for (int i = 0; i < sc->count; i++) lua_pushnil(L); /* one slot per key */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pushvalue(L, -2);
    lua_rawget(L, positions);
    if (lua_type(L, -1) != LUA_TNUMBER) {
      const char *name = lua_type(L, -3) == LUA_TSTRING ? lua_tostring(L, -3) : "?";
      luaL_error(L, "json: unknown field '%s' for %s", name, what);
    }
    int pos = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_replace(L, positions + pos);                /* value into its slot */
  }
  buf_putc(L, b, '{');
  int written = 0;
  for (int pos = 1; pos <= sc->count; pos++) {
    int slot = positions + pos;
    if (lua_isnil(L, slot)) continue;
    if (written++) buf_putc(L, b, ',');
    const unsigned char *key = sc->text.data + sc->offset[pos - 1];
    size_t klen = sc->offset[pos] - sc->offset[pos - 1];
    buf_append(L, b, key, klen);
    size_t bad_at = 0;
    const char *why = json_value(L, b, slot, &bad_at);
    if (why == json_bad_utf8) {
      lua_rawgeti(L, positions, pos);
      snprintf(bad->what, sizeof bad->what, "field '%s' of %s %s (byte %zu)",
               lua_tostring(L, -1), what, why, bad_at);
      lua_settop(L, positions - 1);
      return -1;
    }
    if (why) {
      lua_rawgeti(L, positions, pos);
      luaL_error(L, "json: field '%s' of %s %s", lua_tostring(L, -1), what, why);
    }
  }
  buf_putc(L, b, '}');
  lua_settop(L, positions - 1);
  return 0;
}

static int json_schema_gc(lua_State *L) {
  json_schema *sc = luaL_checkudata(L, 1, JSON_SCHEMA_MT);
  free(sc->offset);
  sc->offset = NULL;
  buf_free(&sc->text);
  sc->count = 0;
  return 0;
}

/* core.json_schema({ "Key1", "Key2", ... }) -> schema
 * Compiles a key order for json_object / oneshot_json / oneshot_frame. */
static int json_lua_schema(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int count = (int)lua_rawlen(L, 1);
  json_schema *sc = lua_newuserdata(L, sizeof *sc);
  memset(sc, 0, sizeof *sc);
  luaL_setmetatable(L, JSON_SCHEMA_MT);
  size_t *offset = malloc(sizeof *offset * ((size_t)count + 1));
  if (!offset) return luaL_error(L, "json: out of memory");
  sc->offset = offset;
  offset[0] = 0;
  lua_createtable(L, count, count);                /* key <-> position */
  for (int i = 1; i <= count; i++) {
    lua_rawgeti(L, 1, i);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "json_schema: key %d is not a string", i);
    size_t klen;
    const char *key = lua_tolstring(L, -1, &klen);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (!lua_isnil(L, -1)) luaL_error(L, "json_schema: key '%s' is listed twice", key);
    lua_pop(L, 1);
    /* The text lives in the schema itself, which nothing else can reach
     * while the Lua allocations below run. */
    if (json_string(L, &sc->text, key, klen))
      luaL_error(L, "json_schema: key %d is not valid UTF-8", i);
    buf_append(L, &sc->text, ":", 1);
    offset[i] = sc->text.len;
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, i);                         /* i -> key, for errors */
    lua_pushinteger(L, i);
    lua_rawset(L, -3);                             /* key -> i */
  }
  sc->count = count;
  lua_setuservalue(L, -2);
  return 1;
}

/* Writes {"Header":{"Method":m},"Body":...} from the call's arguments:
 * 1 method, 2 body (nil, string or table), 3 schema (when body is a table).
 * Returns 0, or -1 with *bad filled when a string is not valid UTF-8. */
static int json_message(lua_State *L, buf_t *b, json_bad *bad) {
  size_t mlen;
  const char *method = luaL_checklstring(L, 1, &mlen);
  int body_type = lua_type(L, 2);
  luaL_argcheck(L, body_type == LUA_TNIL || body_type == LUA_TNONE ||
                   body_type == LUA_TSTRING || body_type == LUA_TTABLE,
                2, "body must be nil, a string or a table");
  if (body_type == LUA_TTABLE) luaL_checkudata(L, 3, JSON_SCHEMA_MT);
  buf_scratch(b);
  json_literal(L, b, "{\"Header\":{\"Method\":");
  size_t bad_at = json_string(L, b, method, mlen);
  if (bad_at) {
    snprintf(bad->what, sizeof bad->what, "the method %s (byte %zu)", json_bad_utf8, bad_at);
    return -1;
  }
  buf_putc(L, b, '}');
  if (body_type == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, 2, &n);
    json_literal(L, b, ",\"Body\":");
    bad_at = json_string(L, b, s, n);
    if (bad_at) {
      snprintf(bad->what, sizeof bad->what, "the Body of %s %s (byte %zu)", method,
               json_bad_utf8, bad_at);
      return -1;
    }
  } else if (body_type == LUA_TTABLE) {
    json_literal(L, b, ",\"Body\":");
    if (json_object(L, b, 2, 3, method, bad) != 0) return -1;
  }
  buf_putc(L, b, '}');
  return 0;
}

/* nil, err for a string that is not UTF-8; the scratch is given back. */
static int json_refuse(lua_State *L, buf_t *b, const json_bad *bad) {
  buf_drop(b);
  return err_push(L, "invalid_input", "bad_utf8", "json: %s", bad->what);
}

/* core.json_object(tbl, schema) -> compact JSON object in the schema's order
 *   | nil, err (a string value that is not valid UTF-8) */
static int json_lua_object(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  buf_t *out = buf_scratch(&CORE_STATE(L)->json);
  json_bad bad;
  if (json_object(L, out, 1, 2, "object", &bad) != 0) return json_refuse(L, out, &bad);
  buf_push(L, out, 0, out->len, 0);
  return 1;
}

/* core.oneshot_json(method, body, schema) -> JSON text of a whole message
 *   | nil, err (a string that is not valid UTF-8) */
static int json_lua_message(lua_State *L) {
  buf_t *out = &CORE_STATE(L)->json;
  json_bad bad;
  if (json_message(L, out, &bad) != 0) return json_refuse(L, out, &bad);
  buf_push(L, out, 0, out->len, 0);
  return 1;
}

/* core.oneshot_frame(method, body, schema [, level]) -> wire bytes | nil, err
 * The JSON of oneshot_json, compressed and framed in one call. */
static int json_lua_frame(lua_State *L) {
  int level = (int)luaL_optinteger(L, 4, 9);
  luaL_argcheck(L, level >= -1 && level <= 9, 4, "level must be -1..9");
  buf_t *json = &CORE_STATE(L)->json;
  json_bad bad;
  if (json_message(L, json, &bad) != 0) return json_refuse(L, json, &bad);
  /* frame_push compresses before it allocates anything in Lua, so the
   * JSON text is read before a finalizer could touch it. */
  int nret = frame_push(L, json->data, json->len, level);
  buf_drop(json);
  return nret;
}

void json_open(lua_State *L) {
  luaL_newmetatable(L, JSON_SCHEMA_MT);
  lua_pushcfunction(L, json_schema_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
      {"json_schema", json_lua_schema},
      {"json_object", json_lua_object},
      {"oneshot_json", json_lua_message},
      {"oneshot_frame", json_lua_frame},
      {NULL, NULL},
  };
  core_register(L, fns);
}
