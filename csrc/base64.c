/*
 * base64.c - RFC 4648 base64 (standard alphabet, padded) for ksms.core.
 *
 * Decoding is strict on purpose: a message that does not round-trip
 * byte-for-byte is rejected instead of being "repaired", so two peers can
 * never disagree about what a token or payload decoded to.
 */
#include <stdint.h>
#include "ksms.h"

static const char b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The decode table is computed by the compiler from the same rules as the
 * alphabet above rather than typed in by hand. Anything that is not an
 * alphabet character (padding and whitespace included) maps to
 * B64_INVALID, whose top bits can never be set by a 6-bit value. */
#define B64_INVALID 0xFF
#define B64_VALUE(c)                                    \
  ((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'               \
   : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26          \
   : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52          \
   : (c) == '+'               ? 62                      \
   : (c) == '/'               ? 63                      \
                              : B64_INVALID)
#define B64_ROW4(c) B64_VALUE(c), B64_VALUE((c) + 1), B64_VALUE((c) + 2), \
                    B64_VALUE((c) + 3)
#define B64_ROW16(c) B64_ROW4(c), B64_ROW4((c) + 4), B64_ROW4((c) + 8), \
                     B64_ROW4((c) + 12)
#define B64_ROW64(c) B64_ROW16(c), B64_ROW16((c) + 16), B64_ROW16((c) + 32), \
                     B64_ROW16((c) + 48)

static const unsigned char b64_decode_table[256] = {
    B64_ROW64(0), B64_ROW64(64), B64_ROW64(128), B64_ROW64(192)};

/* Any of these bits set in an OR of looked-up values means "not base64". */
#define B64_BAD_BITS 0xC0

/* Hands the first len bytes of the scratch buffer to Lua as a string. */
static int b64_push_scratch(lua_State *L, buf_t *out) {
  buf_push(L, out, 0, out->len, 0);
  return 1;
}

/* core.b64encode(s) -> string */
static int b64_encode(lua_State *L) {
  size_t in_len;
  const unsigned char *in =
      (const unsigned char *)luaL_checklstring(L, 1, &in_len);
  buf_t *out = &CORE_STATE(L)->out;

  if (in_len == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  /* Every started group of 3 input bytes becomes 4 characters. */
  size_t groups = in_len / 3 + (in_len % 3 != 0);
  if (groups > (SIZE_MAX - 1) / 4)
    return luaL_error(L, "ksms.core.b64encode: input too large");
  size_t out_len = groups * 4;

  buf_scratch(out);
  unsigned char *dst = buf_reserve(L, out, out_len);
  const unsigned char *src = in;
  const unsigned char *full_end = in + in_len - in_len % 3;

  while (src < full_end) {
    uint32_t bits = (uint32_t)src[0] << 16 | (uint32_t)src[1] << 8 | src[2];
    dst[0] = (unsigned char)b64_alphabet[bits >> 18];
    dst[1] = (unsigned char)b64_alphabet[(bits >> 12) & 63];
    dst[2] = (unsigned char)b64_alphabet[(bits >> 6) & 63];
    dst[3] = (unsigned char)b64_alphabet[bits & 63];
    src += 3;
    dst += 4;
  }

  /* One or two trailing bytes: the missing ones count as zero bits and
   * the characters they would have produced become '='. */
  size_t tail = in_len % 3;
  if (tail) {
    uint32_t bits = (uint32_t)src[0] << 16;
    if (tail == 2) bits |= (uint32_t)src[1] << 8;
    dst[0] = (unsigned char)b64_alphabet[bits >> 18];
    dst[1] = (unsigned char)b64_alphabet[(bits >> 12) & 63];
    dst[2] = tail == 2 ? (unsigned char)b64_alphabet[(bits >> 6) & 63] : '=';
    dst[3] = '=';
  }

  out->len = out_len;
  return b64_push_scratch(L, out);
}

/* Explains why quantum-sized text at in[start..start+count) failed the
 * fast check: names the first offending character by its 1-based
 * position in the whole input, the way Lua's string functions count. */
static int b64_reject_chars(lua_State *L, const unsigned char *in,
                            size_t start, size_t count) {
  for (size_t i = start; i < start + count; i++) {
    if (in[i] == '=')
      return err_push(L, "invalid_input", "bad_base64",
                      "base64 padding '=' at position %zu is not at the end",
                      i + 1);
    if (b64_decode_table[in[i]] == B64_INVALID)
      return err_push(L, "invalid_input", "bad_base64",
                      "invalid base64 character 0x%02x at position %zu",
                      in[i], i + 1);
  }
  /* Unreachable: the caller only comes here when a character was bad. */
  return err_push(L, "invalid_input", "bad_base64",
                  "invalid base64 near position %zu", start + 1);
}

/* core.b64decode(s) -> string | nil, err */
static int b64_decode(lua_State *L) {
  size_t in_len;
  const unsigned char *in =
      (const unsigned char *)luaL_checklstring(L, 1, &in_len);
  buf_t *out = &CORE_STATE(L)->out;

  if (in_len % 4 != 0)
    return err_push(L, "invalid_input", "bad_base64",
                    "base64 length %zu is not a multiple of 4", in_len);
  if (in_len == 0) {
    lua_pushliteral(L, "");
    return 1;
  }

  buf_scratch(out);
  /* 3 bytes per quantum is an upper bound; padding only shortens it. */
  unsigned char *dst = buf_reserve(L, out, in_len / 4 * 3);
  const unsigned char *src = in;
  const unsigned char *last_quantum = in + in_len - 4;

  /* Every quantum but the last must be four alphabet characters. */
  while (src < last_quantum) {
    unsigned a = b64_decode_table[src[0]], b = b64_decode_table[src[1]];
    unsigned c = b64_decode_table[src[2]], d = b64_decode_table[src[3]];
    if ((a | b | c | d) & B64_BAD_BITS) {
      buf_drop(out);
      return b64_reject_chars(L, in, (size_t)(src - in), 4);
    }
    uint32_t bits = (uint32_t)a << 18 | (uint32_t)b << 12 | c << 6 | d;
    dst[0] = (unsigned char)(bits >> 16);
    dst[1] = (unsigned char)(bits >> 8);
    dst[2] = (unsigned char)bits;
    src += 4;
    dst += 3;
  }

  /* The last quantum may end in "=" or "==". Whatever the padding hides
   * must be zero bits, otherwise several encodings would decode to the
   * same bytes (RFC 4648 §3.5). */
  size_t pos = (size_t)(src - in);
  size_t data_chars = src[3] != '=' ? 4 : src[2] != '=' ? 3 : 2;
  /* A '=' left among the data characters ("Zg=a", "A===") fails the table
   * lookup like any other non-alphabet byte. */
  unsigned values[4] = {0, 0, 0, 0};
  unsigned seen = 0;
  for (size_t i = 0; i < data_chars; i++) {
    values[i] = b64_decode_table[src[i]];
    seen |= values[i];
  }
  if (seen & B64_BAD_BITS) {
    buf_drop(out);
    return b64_reject_chars(L, in, pos, data_chars);
  }

  uint32_t bits = (uint32_t)values[0] << 18 | (uint32_t)values[1] << 12 |
                  values[2] << 6 | values[3];
  size_t tail_bytes = data_chars - 1;
  uint32_t leftover_mask = tail_bytes == 1 ? 0xFFFF : tail_bytes == 2 ? 0xFF : 0;
  if (bits & leftover_mask) {
    buf_drop(out);
    return err_push(L, "invalid_input", "bad_base64",
                    "non-canonical base64: unused bits set at position %zu",
                    pos + data_chars);
  }
  dst[0] = (unsigned char)(bits >> 16);
  if (tail_bytes > 1) dst[1] = (unsigned char)(bits >> 8);
  if (tail_bytes > 2) dst[2] = (unsigned char)bits;

  out->len = (size_t)(dst - out->data) + tail_bytes;
  return b64_push_scratch(L, out);
}

void b64_open(lua_State *L) {
  static const luaL_Reg b64_functions[] = {
      {"b64encode", b64_encode},
      {"b64decode", b64_decode},
      {NULL, NULL},
  };
  core_register(L, b64_functions);
}
