/*
 * curl_loop - the floor of what one provider request costs: the same form
 * POST sent N times with raw libcurl on one reused easy handle (keep-alive),
 * nothing else. Prints requests per second (CPU time of this process and
 * wall time).
 *
 *   curl_loop URL BODY_FILE N
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t discard(char *p, size_t size, size_t n, void *ud) {
  (void)p; (void)ud;
  return size * n;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: curl_loop URL BODY_FILE N\n");
    return 2;
  }
  FILE *f = fopen(argv[2], "rb");
  if (!f) { perror(argv[2]); return 1; }
  static char body[1 << 16];
  size_t blen = fread(body, 1, sizeof body, f);
  fclose(f);
  long n = atol(argv[3]);

  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL *h = curl_easy_init();
  struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
  curl_easy_setopt(h, CURLOPT_URL, argv[1]);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)blen);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);

  double c0 = seconds(CLOCK_PROCESS_CPUTIME_ID), w0 = seconds(CLOCK_MONOTONIC);
  for (long i = 0; i < n; i++) {
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
      fprintf(stderr, "request %ld failed: %s %ld\n", i, curl_easy_strerror(rc), status);
      return 1;
    }
  }
  double c1 = seconds(CLOCK_PROCESS_CPUTIME_ID), w1 = seconds(CLOCK_MONOTONIC);
  printf("cpu_rate %.1f\nwall_rate %.1f\n", n / (c1 - c0), n / (w1 - w0));
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  curl_global_cleanup();
  return 0;
}
