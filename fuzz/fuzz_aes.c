/*
 * fuzz_aes - core.aes128cbc_decrypt on any ciphertext, and the encrypt /
 * decrypt round trip.
 *
 * Input: 16 bytes of key, 16 of IV, then the ciphertext. The reference
 * decrypts block by block with OpenSSL's raw AES-128-CBC (padding off) and
 * checks PKCS#7 itself. Invariants: decrypt succeeds exactly when the
 * length is a positive multiple of 16 and the padding checks out, with the
 * reference's plaintext; otherwise nil plus a protocol error (bad_length,
 * bad_padding); decrypt(encrypt(x)) == x; encrypt's length is
 * 16 * (floor(#x / 16) + 1).
 */
#include <openssl/evp.h>
#include "harness.h"

/* NULL, plain and *n; or the code ksms must give. */
static const char *fz_ref_decrypt(const uint8_t *key, const uint8_t *iv, const uint8_t *c,
                                  size_t n, uint8_t **plain, size_t *plain_n) {
  if (n == 0 || n % 16) return "bad_length";
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  uint8_t *out = malloc(n + 16);
  int a = 0, b = 0;
  if (!ctx || !out || EVP_DecryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, key, iv) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 ||
      EVP_DecryptUpdate(ctx, out, &a, c, (int)n) != 1 || EVP_DecryptFinal_ex(ctx, out + a, &b) != 1)
    abort();
  EVP_CIPHER_CTX_free(ctx);
  size_t len = (size_t)(a + b);
  unsigned pad = out[len - 1];
  int ok = pad >= 1 && pad <= 16;
  for (unsigned i = 1; ok && i <= pad; i++) ok = out[len - i] == pad;
  if (!ok) {
    free(out);
    return "bad_padding";
  }
  *plain = out;
  *plain_n = len - pad;
  return NULL;
}

static void fz_one(const uint8_t *data, size_t size) {
  if (size < 32) return;
  lua_State *L = fz_state();
  const uint8_t *key = data, *iv = data + 16, *c = data + 32;
  size_t n = size - 32;

  uint8_t *ref = NULL;
  size_t ref_n = 0;
  const char *want = fz_ref_decrypt(key, iv, c, n, &ref, &ref_n);
  fz_core_fn(L, "aes128cbc_decrypt");
  lua_pushlstring(L, (const char *)c, n);
  lua_pushlstring(L, (const char *)key, 16);
  lua_pushlstring(L, (const char *)iv, 16);
  fz_call(L, 3, 2, "aes128cbc_decrypt");
  if (!want) {
    size_t pn;
    const char *p = lua_tolstring(L, -2, &pn);
    FZ_CHECK(p && lua_isnil(L, -1), "decrypt refused what the reference decrypts");
    FZ_CHECK(pn == ref_n && memcmp(p, ref, pn) == 0, "decrypt's plaintext differs");
  } else {
    FZ_CHECK(lua_isnil(L, -2), "decrypt succeeded where the reference says %s", want);
    const char *code = fz_check_error(L, -1, "protocol", "aes128cbc_decrypt");
    FZ_CHECK(strcmp(code, want) == 0, "decrypt error %s, reference %s", code, want);
  }
  free(ref);
  lua_settop(L, 0);

  fz_core_fn(L, "aes128cbc_decrypt");
  fz_core_fn(L, "aes128cbc_encrypt");
  lua_pushlstring(L, (const char *)c, n);
  lua_pushlstring(L, (const char *)key, 16);
  lua_pushlstring(L, (const char *)iv, 16);
  fz_call(L, 3, 1, "aes128cbc_encrypt");
  size_t cn;
  lua_tolstring(L, -1, &cn);
  FZ_CHECK(cn == (n / 16 + 1) * 16, "encrypt gave %zu bytes for %zu", cn, n);
  lua_pushlstring(L, (const char *)key, 16);
  lua_pushlstring(L, (const char *)iv, 16);
  fz_call(L, 3, 2, "aes128cbc_decrypt");
  size_t bn;
  const char *back = lua_tolstring(L, -2, &bn);
  FZ_CHECK(back && bn == n && memcmp(back, c, n) == 0, "decrypt(encrypt(x)) ~= x");
  fz_done(L);
  return;
}
