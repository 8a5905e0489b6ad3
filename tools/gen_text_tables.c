/*
 * gen_text_tables.c - writes csrc/text_tables.h, the charset bitmaps behind
 * core.charset_check, by asking glibc iconv(3) about every code point.
 *
 *   cc -std=gnu11 -O2 -Wall -Wextra -o build/gen_text_tables tools/gen_text_tables.c
 *   build/gen_text_tables csrc/text_tables.h
 *
 * (that is what `make tables` runs). A code point counts as representable
 * in a charset when iconv converts it without error AND converting the bytes
 * back gives the same code point, so near-miss substitutions are left out,
 * and so are characters glibc "converts" to nothing or passes through as
 * single bytes (the C1 controls in its EUC-KR).
 * The generator aborts when what iconv says breaks an assumption text.c
 * relies on: ASCII maps to itself, every other representable character is
 * exactly 2 bytes, and nothing above U+FFFF converts.
 *
 * Layout: per charset, 256 one-byte page numbers (one per high byte of the
 * code point) into a shared pool of deduplicated 32-byte pages, each a
 * 256-bit bitmap (bit cp & 7 of byte (cp >> 3) & 31).
 */
#include <errno.h>
#include <iconv.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_BYTES 32
#define MAX_PAGES 256 /* page numbers are stored as uint8_t */

typedef struct charset_info {
  const char *iconv_name;  /* what iconv_open calls it */
  const char *c_name;      /* used in the generated identifiers */
  iconv_t to_charset;      /* UTF-32LE -> charset */
  iconv_t from_charset;    /* charset -> UTF-32LE, for the round trip */
  uint8_t bits[0x10000 / 8];
  uint8_t page_of[256];
  unsigned representable;  /* non-ASCII code points in the table */
  unsigned rejected_round_trip;
  unsigned rejected_c1;
  unsigned dropped;        /* "converted" to nothing */
} charset_info;

static uint8_t page_pool[MAX_PAGES][PAGE_BYTES];
static unsigned page_count;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "gen_text_tables: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

/* Converts n bytes with cd. Returns the output length, or -1 when iconv
 * refuses the input (EILSEQ/EINVAL). Other failures abort. */
static long convert(iconv_t cd, const void *in, size_t n, unsigned char *out,
                    size_t out_cap, const char *charset) {
  char *inp = (char *)in, *outp = (char *)out;
  size_t in_left = n, out_left = out_cap;
  iconv(cd, NULL, NULL, NULL, NULL); /* reset any shift state */
  if (iconv(cd, &inp, &in_left, &outp, &out_left) == (size_t)-1) {
    if (errno == EILSEQ || errno == EINVAL) return -1;
    die("iconv failed (%s): %s", charset, strerror(errno));
  }
  /* flush, for a stateful charset that would need it */
  if (iconv(cd, NULL, NULL, &outp, &out_left) == (size_t)-1)
    die("iconv flush failed (%s): %s", charset, strerror(errno));
  return (long)(out_cap - out_left);
}

static void put_le32(unsigned char *p, uint32_t v) {
  p[0] = v & 0xFF;
  p[1] = (v >> 8) & 0xFF;
  p[2] = (v >> 16) & 0xFF;
  p[3] = v >> 24;
}

static void open_charset(charset_info *cs) {
  cs->to_charset = iconv_open(cs->iconv_name, "UTF-32LE");
  cs->from_charset = iconv_open("UTF-32LE", cs->iconv_name);
  if (cs->to_charset == (iconv_t)-1 || cs->from_charset == (iconv_t)-1)
    die("iconv has no converter for %s", cs->iconv_name);
}

static void scan_charset(charset_info *cs) {
  unsigned char utf32[4], encoded[16], back[16];

  for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue; /* not characters */
    put_le32(utf32, cp);
    long n = convert(cs->to_charset, utf32, 4, encoded, sizeof encoded,
                     cs->iconv_name);
    if (n < 0) continue;
    /* glibc silently drops some characters (the U+E0000..U+E007F tags):
     * success with no output is not an encoding. */
    if (n == 0) {
      cs->dropped++;
      continue;
    }
    if (cp > 0xFFFF)
      die("U+%04lX converts to %s; text.c assumes the BMP", (unsigned long)cp,
          cs->iconv_name);
    if (cp < 0x80) {
      if (n != 1 || encoded[0] != cp)
        die("ASCII U+%04lX does not map to itself in %s", (unsigned long)cp,
            cs->iconv_name);
      cs->bits[cp >> 3] |= 1u << (cp & 7);
      continue;
    }
    /* glibc's EUC-KR passes the C1 controls through as single bytes; they
     * are not KS X 1001 characters, so leave them out. */
    if (cp <= 0x9F && n == 1 && encoded[0] == cp) {
      cs->rejected_c1++;
      continue;
    }
    if (n != 2)
      die("U+%04lX is %ld bytes in %s, not 2", (unsigned long)cp, n,
          cs->iconv_name);
    long m = convert(cs->from_charset, encoded, 2, back, sizeof back,
                     cs->iconv_name);
    if (m != 4 || back[0] != (cp & 0xFF) || back[1] != ((cp >> 8) & 0xFF) ||
        back[2] != 0 || back[3] != 0) {
      fprintf(stderr, "gen_text_tables: %s: U+%04lX does not round-trip, left out\n",
              cs->iconv_name, (unsigned long)cp);
      cs->rejected_round_trip++;
      continue;
    }
    cs->bits[cp >> 3] |= 1u << (cp & 7);
    cs->representable++;
  }
}

/* Splits a charset's bitmap into pages, sharing identical ones. */
static void build_pages(charset_info *cs) {
  for (unsigned hi = 0; hi < 256; hi++) {
    const uint8_t *page = cs->bits + hi * PAGE_BYTES;
    unsigned found = 0;
    while (found < page_count && memcmp(page_pool[found], page, PAGE_BYTES))
      found++;
    if (found == page_count) {
      if (page_count == MAX_PAGES)
        die("more than %d distinct pages", MAX_PAGES);
      memcpy(page_pool[page_count++], page, PAGE_BYTES);
    }
    cs->page_of[hi] = (uint8_t)found;
  }
}

static void write_index(FILE *f, const charset_info *cs) {
  fprintf(f, "\n/* %s: %u non-ASCII code points (plus ASCII). */\n",
          cs->iconv_name, cs->representable);
  fprintf(f, "static const uint8_t text_%s_page[256] = {\n", cs->c_name);
  for (unsigned hi = 0; hi < 256; hi++)
    fprintf(f, "%s%3u,%s", hi % 16 ? " " : "  ", cs->page_of[hi],
            hi % 16 == 15 ? "\n" : "");
  fprintf(f, "};\n");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUTPUT.h\n", argv[0]);
    return 2;
  }
  static charset_info charsets[] = {
    {.iconv_name = "CP949", .c_name = "cp949"},
    {.iconv_name = "EUC-KR", .c_name = "euckr"},
  };
  const size_t ncharsets = sizeof charsets / sizeof charsets[0];

  /* Page 0 is the empty page so unused high bytes point at it. */
  page_count = 1;
  for (size_t i = 0; i < ncharsets; i++) {
    open_charset(&charsets[i]);
    scan_charset(&charsets[i]);
    build_pages(&charsets[i]);
    fprintf(stderr, "gen_text_tables: %s: %u non-ASCII characters, "
            "left out: %u C1 pass-throughs, %u non-round-trips, "
            "%u silently dropped\n",
            charsets[i].iconv_name, charsets[i].representable,
            charsets[i].rejected_c1, charsets[i].rejected_round_trip,
            charsets[i].dropped);
  }

  /* Write next to the target and rename, so a failed run never leaves a
   * half-written header behind. */
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]) >= (int)sizeof tmp)
    die("output path too long");
  FILE *f = fopen(tmp, "w");
  if (!f) {
    perror(tmp);
    return 1;
  }
  fprintf(f,
          "/*\n"
          " * text_tables.h - GENERATED by tools/gen_text_tables.c from glibc iconv;\n"
          " * do not edit. Regenerate with `make tables`, i.e.\n"
          " *   cc -std=gnu11 -O2 -Wall -Wextra -o build/gen_text_tables tools/gen_text_tables.c\n"
          " *   build/gen_text_tables csrc/text_tables.h\n"
          " *\n"
          " * Which BMP code points CP949 and strict EUC-KR (KS X 1001) can encode\n"
          " * (nothing above U+FFFF is in either). Every non-ASCII one is 2 bytes.\n"
          " * Lookup: text_pages[text_<cs>_page[cp >> 8]][(cp >> 3) & 31] >> (cp & 7) & 1\n"
          " */\n"
          "#ifndef KSMS_TEXT_TABLES_H\n"
          "#define KSMS_TEXT_TABLES_H\n\n"
          "#include <stdint.h>\n");
  for (size_t i = 0; i < ncharsets; i++) write_index(f, &charsets[i]);
  fprintf(f, "\n/* %u distinct 256-bit pages; page 0 is empty. */\n", page_count);
  fprintf(f, "static const uint8_t text_pages[%u][%d] = {\n", page_count,
          PAGE_BYTES);
  for (unsigned p = 0; p < page_count; p++) {
    fprintf(f, "  {");
    for (unsigned b = 0; b < PAGE_BYTES; b++)
      fprintf(f, "%s0x%02x%s", b == 16 ? "\n   " : b ? " " : "",
              page_pool[p][b], b + 1 < PAGE_BYTES ? "," : "");
    fprintf(f, "},\n");
  }
  fprintf(f, "};\n\n#endif\n");
  if (ferror(f) | fclose(f)) {
    perror(tmp);
    remove(tmp);
    return 1;
  }
  if (rename(tmp, argv[1]) != 0) {
    perror(argv[1]);
    remove(tmp);
    return 1;
  }
  return 0;
}
