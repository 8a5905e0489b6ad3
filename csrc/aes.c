/*
 * aes.c - AES-128-CBC with PKCS#5/7 padding for ksms.core, on OpenSSL 3's
 * EVP interface.
 *
 * Each Lua state owns one aes_ctx. Setting up an EVP context is most of
 * the cost of encrypting a short message, so the context is kept between
 * calls, and so is an explicitly fetched cipher: with OpenSSL 3, passing
 * EVP_aes_128_cbc() makes every init look the algorithm up in the provider
 * store and rebuild the provider context. Once the context holds the
 * cipher, later inits pass NULL and only load the new key and IV.
 */
#include <limits.h>
#include <stdlib.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include "ksms.h"

#define AES_BLOCK 16
#define AES_KEY_LEN 16
#define AES_IV_LEN 16

/* EVP_CipherUpdate takes an int length; longer input goes in chunks of
 * this many bytes (a multiple of the block size). */
#define AES_MAX_CHUNK ((size_t)1 << 30)

struct aes_ctx {
  EVP_CIPHER_CTX *cipher_ctx; /* reused for every call in this state */
  EVP_CIPHER *fetched;        /* owned reference, NULL if the fetch failed */
  const EVP_CIPHER *cipher;   /* fetched, or the legacy EVP_aes_128_cbc() */
  int cipher_loaded;          /* cipher_ctx already holds cipher */
};

aes_ctx *aes_ctx_new(void) {
  aes_ctx *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->cipher_ctx = EVP_CIPHER_CTX_new();
  if (!a->cipher_ctx) {
    free(a);
    return NULL;
  }
  /* The legacy object still works if fetching is impossible; it is only
   * slower. */
  a->fetched = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
  a->cipher = a->fetched ? a->fetched : EVP_aes_128_cbc();
  ERR_clear_error();
  return a;
}

void aes_ctx_free(aes_ctx *a) {
  if (!a) return;
  /* Frees (and wipes) the key schedule left from the last call. */
  EVP_CIPHER_CTX_free(a->cipher_ctx);
  EVP_CIPHER_free(a->fetched);
  free(a);
}

/* A key or IV of the wrong size is a bug in the caller, so it raises.
 * Only the length is reported: key bytes never go into messages. */
static const unsigned char *aes_check_block_arg(lua_State *L, int arg,
                                                const char *what,
                                                size_t expected) {
  size_t len;
  const char *s = luaL_checklstring(L, arg, &len);
  if (len != expected) {
    int shown = len > INT_MAX ? INT_MAX : (int)len;
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "%s must be exactly %d bytes, got %d",
                                  what, (int)expected, shown));
  }
  return (const unsigned char *)s;
}

/* OpenSSL failures that input cannot cause (allocation inside OpenSSL,
 * a broken provider) raise. The context is set up from scratch next time
 * and OpenSSL's per-thread error queue is left empty for other users. */
static int aes_internal_failure(lua_State *L, aes_ctx *a, const char *step) {
  a->cipher_loaded = 0;
  ERR_clear_error();
  return luaL_error(L, "ksms.core: OpenSSL %s failed", step);
}

/* Runs in[0..in_len) through the cipher into dst, which has room for
 * in_len + AES_BLOCK bytes. Returns the number of bytes written, or -1
 * when the final step fails (on decryption: the padding is wrong). */
static long long aes_run(lua_State *L, aes_ctx *a, int encrypt,
                         const unsigned char *key, const unsigned char *iv,
                         const unsigned char *in, size_t in_len,
                         unsigned char *dst) {
  EVP_CIPHER_CTX *ctx = a->cipher_ctx;
  const EVP_CIPHER *cipher = a->cipher_loaded ? NULL : a->cipher;
  if (EVP_CipherInit_ex(ctx, cipher, NULL, key, iv, encrypt) != 1)
    return aes_internal_failure(L, a, "EVP_CipherInit_ex");
  a->cipher_loaded = 1;

  size_t written = 0;
  for (size_t done = 0; done < in_len;) {
    size_t chunk = in_len - done < AES_MAX_CHUNK ? in_len - done : AES_MAX_CHUNK;
    int produced = 0;
    if (EVP_CipherUpdate(ctx, dst + written, &produced, in + done,
                         (int)chunk) != 1)
      return aes_internal_failure(L, a, "EVP_CipherUpdate");
    written += (size_t)produced;
    done += chunk;
  }

  int produced = 0;
  if (EVP_CipherFinal_ex(ctx, dst + written, &produced) != 1) {
    /* Expected for bad padding; keep OpenSSL's error queue clean. */
    ERR_clear_error();
    return -1;
  }
  return (long long)(written + (size_t)produced);
}

/* core.aes128cbc_encrypt(plain, key, iv) -> ciphertext
 * key and iv are 16-byte strings; the result is padded PKCS#7 style, so it
 * is 1 to 16 bytes longer than plain (a multiple of 16). */
static int aes_encrypt(lua_State *L) {
  size_t plain_len;
  const unsigned char *plain =
      (const unsigned char *)luaL_checklstring(L, 1, &plain_len);
  const unsigned char *key = aes_check_block_arg(L, 2, "key", AES_KEY_LEN);
  const unsigned char *iv = aes_check_block_arg(L, 3, "iv", AES_IV_LEN);
  core_state *state = CORE_STATE(L);

  if (plain_len > (size_t)LLONG_MAX - 2 * AES_BLOCK)
    return luaL_error(L, "ksms.core.aes128cbc_encrypt: input too large");
  unsigned char *dst = buf_reserve(L, buf_scratch(&state->out), plain_len + AES_BLOCK);
  long long cipher_len = aes_run(L, state->aes, 1, key, iv, plain, plain_len, dst);
  if (cipher_len < 0) return aes_internal_failure(L, state->aes, "EVP_CipherFinal_ex");

  buf_push(L, &state->out, 0, (size_t)cipher_len, 0);
  return 1;
}

/* core.aes128cbc_decrypt(cipher, key, iv) -> plaintext | nil, err
 * key and iv are 16-byte strings. A ciphertext that is not a positive
 * multiple of 16 bytes, or whose padding does not check out (wrong key,
 * wrong IV on a one-block message, corruption), gives nil and a
 * "protocol" error. */
static int aes_decrypt(lua_State *L) {
  size_t cipher_len;
  const unsigned char *ciphertext =
      (const unsigned char *)luaL_checklstring(L, 1, &cipher_len);
  const unsigned char *key = aes_check_block_arg(L, 2, "key", AES_KEY_LEN);
  const unsigned char *iv = aes_check_block_arg(L, 3, "iv", AES_IV_LEN);
  core_state *state = CORE_STATE(L);

  if (cipher_len == 0 || cipher_len % AES_BLOCK != 0)
    return err_push(L, "protocol", "bad_length",
                    "AES-CBC ciphertext length %zu is not a positive multiple of 16",
                    cipher_len);
  if (cipher_len > (size_t)LLONG_MAX - 2 * AES_BLOCK)
    return luaL_error(L, "ksms.core.aes128cbc_decrypt: input too large");

  unsigned char *dst = buf_reserve(L, buf_scratch(&state->out), cipher_len + AES_BLOCK);
  long long plain_len = aes_run(L, state->aes, 0, key, iv, ciphertext, cipher_len, dst);

  /* The scratch buffer outlives the call: wipe the plaintext (or, on a
   * padding failure, the partly decrypted blocks) once Lua has its copy. */
  if (plain_len < 0) {
    OPENSSL_cleanse(dst, cipher_len + AES_BLOCK);
    buf_drop(&state->out);
    return err_push(L, "protocol", "bad_padding",
                    "AES-CBC padding is invalid (wrong key or IV, or corrupted "
                    "ciphertext of %zu bytes)", cipher_len);
  }
  state->out.len = cipher_len + AES_BLOCK; /* all of it is wiped */
  buf_push(L, &state->out, 0, (size_t)plain_len, 1);
  return 1;
}

void aes_open(lua_State *L) {
  static const luaL_Reg aes_functions[] = {
      {"aes128cbc_encrypt", aes_encrypt},
      {"aes128cbc_decrypt", aes_decrypt},
      {NULL, NULL},
  };
  core_register(L, aes_functions);
}
