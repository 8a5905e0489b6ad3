/*
 * hex.c - base16 (RFC 4648 §8) for ksms.core: lowercase by default because
 * that is what digests and keys are usually logged and compared as.
 */
#include <stdint.h>
#include "ksms.h"

static const char hex_lower_digits[16] = "0123456789abcdef";
static const char hex_upper_digits[16] = "0123456789ABCDEF";

/* Digit values computed by the compiler; both cases are accepted and
 * everything else maps to HEX_INVALID, which has bits a nibble never has. */
#define HEX_INVALID 0xFF
#define HEX_VALUE(c)                           \
  ((c) >= '0' && (c) <= '9'   ? (c) - '0'      \
   : (c) >= 'a' && (c) <= 'f' ? (c) - 'a' + 10 \
   : (c) >= 'A' && (c) <= 'F' ? (c) - 'A' + 10 \
                              : HEX_INVALID)
#define HEX_ROW4(c) HEX_VALUE(c), HEX_VALUE((c) + 1), HEX_VALUE((c) + 2), \
                    HEX_VALUE((c) + 3)
#define HEX_ROW16(c) HEX_ROW4(c), HEX_ROW4((c) + 4), HEX_ROW4((c) + 8), \
                     HEX_ROW4((c) + 12)
#define HEX_ROW64(c) HEX_ROW16(c), HEX_ROW16((c) + 16), HEX_ROW16((c) + 32), \
                     HEX_ROW16((c) + 48)

static const unsigned char hex_digit_value[256] = {
    HEX_ROW64(0), HEX_ROW64(64), HEX_ROW64(128), HEX_ROW64(192)};

static int hex_push_scratch(lua_State *L, buf_t *out) {
  buf_push(L, out, 0, out->len, 0);
  return 1;
}

/* core.hex(s [, upper]) -> string */
static int hex_encode(lua_State *L) {
  size_t in_len;
  const unsigned char *in =
      (const unsigned char *)luaL_checklstring(L, 1, &in_len);
  const char *digits = lua_toboolean(L, 2) ? hex_upper_digits : hex_lower_digits;
  buf_t *out = &CORE_STATE(L)->out;

  if (in_len == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  if (in_len > SIZE_MAX / 2)
    return luaL_error(L, "ksms.core.hex: input too large");
  buf_scratch(out);
  unsigned char *dst = buf_reserve(L, out, in_len * 2);
  for (size_t i = 0; i < in_len; i++) {
    dst[2 * i] = (unsigned char)digits[in[i] >> 4];
    dst[2 * i + 1] = (unsigned char)digits[in[i] & 15];
  }
  out->len = in_len * 2;
  return hex_push_scratch(L, out);
}

/* Names the first non-hex character at or after start (1-based, as Lua
 * counts string positions). */
static int hex_reject_char(lua_State *L, const unsigned char *in, size_t start) {
  size_t i = start;
  while (hex_digit_value[in[i]] != HEX_INVALID) i++;
  return err_push(L, "invalid_input", "bad_hex",
                  "invalid hex character 0x%02x at position %zu", in[i], i + 1);
}

/* core.unhex(s) -> string | nil, err */
static int hex_decode(lua_State *L) {
  size_t in_len;
  const unsigned char *in =
      (const unsigned char *)luaL_checklstring(L, 1, &in_len);
  buf_t *out = &CORE_STATE(L)->out;

  if (in_len % 2 != 0)
    return err_push(L, "invalid_input", "bad_hex",
                    "hex length %zu is odd", in_len);
  if (in_len == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  buf_scratch(out);
  unsigned char *dst = buf_reserve(L, out, in_len / 2);
  for (size_t i = 0; i < in_len; i += 2) {
    unsigned high = hex_digit_value[in[i]], low = hex_digit_value[in[i + 1]];
    /* One test for both digits: HEX_INVALID sets bits above the nibble. */
    if ((high | low) & 0xF0) {
      buf_drop(out);
      return hex_reject_char(L, in, i);
    }
    dst[i / 2] = (unsigned char)(high << 4 | low);
  }
  out->len = in_len / 2;
  return hex_push_scratch(L, out);
}

void hex_open(lua_State *L) {
  static const luaL_Reg hex_functions[] = {
      {"hex", hex_encode},
      {"unhex", hex_decode},
      {NULL, NULL},
  };
  core_register(L, hex_functions);
}
