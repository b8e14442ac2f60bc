/* Unit tests of the browser client's C, compiled for the host: ids and
 * dedup, the envelope parser (whole, every truncation, malformed), backoff
 * bounds and growth, and the connection state machine (shedding and tab
 * sharing included).
 * Exits 1 on failure. */
#include <stdio.h>
#include <string.h>

#include "tinysse_client.h"

static int failures;

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                          \
    }                                                                      \
  } while (0)

static int parse(const char *s, struct tsc_envelope *e)
{
  return tsc_parse_envelope(s, (uint32_t)strlen(s), e);
}

static int slice_is(const char *s, uint32_t off, uint32_t len, const char *want)
{
  return len == strlen(want) && memcmp(s + off, want, len) == 0;
}

static int id_ok(const char *s, uint64_t epoch, uint64_t seq)
{
  struct tsc_id id;
  return tsc_id_parse(s, (uint32_t)strlen(s), &id) == 0 && id.epoch == epoch && id.seq == seq;
}

static int id_bad(const char *s)
{
  struct tsc_id id;
  return tsc_id_parse(s, (uint32_t)strlen(s), &id) == -1;
}

static void test_ids(void)
{
  CHECK(id_ok("1764213000000-1", 1764213000000ull, 1));
  CHECK(id_ok("0-0", 0, 0));
  CHECK(id_ok("18446744073709551615-18446744073709551615", UINT64_MAX, UINT64_MAX));
  CHECK(id_bad("18446744073709551616-1")); /* UINT64_MAX + 1 */
  CHECK(id_bad("1-99999999999999999999"));
  CHECK(id_bad("123456789012345678901234567890-1"));
  CHECK(id_bad("00000000000000000000000000000000000000000000001-1")); /* too long */
  CHECK(id_bad(""));
  CHECK(id_bad("-"));
  CHECK(id_bad("1-"));
  CHECK(id_bad("-1"));
  CHECK(id_bad("12"));
  CHECK(id_bad("1-2-3"));
  CHECK(id_bad("1 -2"));
  CHECK(id_bad("a-1"));
  CHECK(id_bad("+1-1"));

  struct tsc_id a = {5, 10}, b = {5, 11}, c = {6, 0}, d = {5, 10};
  CHECK(tsc_id_cmp(&a, &b) < 0);
  CHECK(tsc_id_cmp(&b, &a) > 0);
  CHECK(tsc_id_cmp(&a, &d) == 0);
  CHECK(tsc_id_cmp(&b, &c) < 0); /* epoch first: a later run sorts after */
  struct tsc_id big = {1, UINT64_MAX}, small = {1, 1};
  CHECK(tsc_id_cmp(&big, &small) > 0); /* unsigned, no overflow */
}

static void test_envelope_valid(void)
{
  struct tsc_envelope e;
  const char *s = "{\"id\":\"17-3\",\"handler_id\":7,\"data\":{\"a\":[1,2,{\"b\":null}]}}";
  CHECK(parse(s, &e) == 0);
  CHECK(e.id.epoch == 17 && e.id.seq == 3 && e.handler_id == 7);
  CHECK(slice_is(s, e.id_off, e.id_len, "17-3"));
  CHECK(slice_is(s, e.data_off, e.data_len, "{\"a\":[1,2,{\"b\":null}]}"));

  /* Any order, whitespace (EventSource joins data: lines with \n), extra fields. */
  s = " \n{ \"data\" :\n [ \"x\" , -1.5e+3 , true,false ,null,{}] ,\r\n\t\"extra\":{\"id\":\"no\"},"
      "\"handler_id\" : 0 , \"id\" : \"1-2\" }\n ";
  CHECK(parse(s, &e) == 0);
  CHECK(e.handler_id == 0 && e.id.seq == 2);
  CHECK(slice_is(s, e.data_off, e.data_len, "[ \"x\" , -1.5e+3 , true,false ,null,{}]"));

  /* Braces, brackets, quotes and escapes inside strings are not structure. */
  s = "{\"id\":\"1-1\",\"handler_id\":255,\"data\":{\"s\":\"}{][,:\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\ude00\","
      "\"k}\":\"\\\"}\"}}";
  CHECK(parse(s, &e) == 0);
  CHECK(e.handler_id == 255);
  CHECK(slice_is(s, e.data_off, e.data_len,
                 "{\"s\":\"}{][,:\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\ude00\",\"k}\":\"\\\"}\"}"));

  /* Scalars and raw UTF-8 as data. */
  const char *scalars[] = {"\"str\"", "0", "-0", "12.5", "1E9", "true", "false", "null", "[]",
                           "\"h\xc3\xa9 \xf0\x9f\x98\x80\""};
  for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
    char buf[128];
    snprintf(buf, sizeof(buf), "{\"id\":\"9-9\",\"handler_id\":1,\"data\":%s}", scalars[i]);
    CHECK(parse(buf, &e) == 0);
    CHECK(slice_is(buf, e.data_off, e.data_len, scalars[i]));
  }

  /* Nesting: the limit is accepted, one more is refused. */
  static char deep[8 * TSC_MAX_DEPTH + 100];
  for (int extra = 0; extra <= 1; extra++) {
    int d = TSC_MAX_DEPTH + extra; /* levels inside data */
    char *p = deep + sprintf(deep, "{\"id\":\"1-1\",\"handler_id\":1,\"data\":");
    for (int i = 0; i < d; i++)
      p += sprintf(p, i % 2 ? "[" : "{\"k\":");
    *p++ = '0';
    for (int i = d - 1; i >= 0; i--)
      *p++ = i % 2 ? ']' : '}';
    strcpy(p, "}");
    CHECK(parse(deep, &e) == (extra ? TSC_E_DEPTH : 0));
  }
}

static void test_envelope_truncated(void)
{
  /* Every proper prefix of a valid envelope is refused, never accepted. */
  const char *s = "{\"id\":\"1764213000000-42\",\"handler_id\":12,\"data\":{\"t\":\"a}\\\"b\",\"n\":[1,-2.5e3,{}]}}";
  struct tsc_envelope e;
  size_t n = strlen(s);
  CHECK(tsc_parse_envelope(s, (uint32_t)n, &e) == 0);
  for (size_t i = 0; i < n; i++)
    CHECK(tsc_parse_envelope(s, (uint32_t)i, &e) < 0);
}

static void test_envelope_malformed(void)
{
  struct tsc_envelope e;
  static const struct {
    const char *text;
    int rc;
  } cases[] = {
      {"", TSC_E_JSON},
      {"   ", TSC_E_JSON},
      {"null", TSC_E_OBJECT},
      {"[1,2]", TSC_E_OBJECT},
      {"\"{}\"", TSC_E_OBJECT},
      {"[1,", TSC_E_JSON},
      {"{}", TSC_E_ID},
      {"{\"handler_id\":1,\"data\":1}", TSC_E_ID},
      {"{\"id\":17,\"handler_id\":1,\"data\":1}", TSC_E_ID},
      {"{\"id\":null,\"handler_id\":1,\"data\":1}", TSC_E_ID},
      {"{\"id\":\"17\",\"handler_id\":1,\"data\":1}", TSC_E_ID},
      {"{\"id\":\"a-b\",\"handler_id\":1,\"data\":1}", TSC_E_ID},
      {"{\"id\":\"\\u0031-1\",\"handler_id\":1,\"data\":1}", TSC_E_ID},
      {"{\"id\":\"99999999999999999999999-1\",\"handler_id\":1,\"data\":1}", TSC_E_ID},
      {"{\"id\":\"1-18446744073709551616\",\"handler_id\":1,\"data\":1}", TSC_E_ID},
      {"{\"id\":\"1-1\",\"data\":1}", TSC_E_HANDLER},
      {"{\"id\":\"1-1\",\"handler_id\":256,\"data\":1}", TSC_E_HANDLER},
      {"{\"id\":\"1-1\",\"handler_id\":-1,\"data\":1}", TSC_E_HANDLER},
      {"{\"id\":\"1-1\",\"handler_id\":1.5,\"data\":1}", TSC_E_HANDLER},
      {"{\"id\":\"1-1\",\"handler_id\":1e2,\"data\":1}", TSC_E_HANDLER},
      {"{\"id\":\"1-1\",\"handler_id\":1000,\"data\":1}", TSC_E_HANDLER},
      {"{\"id\":\"1-1\",\"handler_id\":99999999999999999999999,\"data\":1}", TSC_E_HANDLER},
      {"{\"id\":\"1-1\",\"handler_id\":\"3\",\"data\":1}", TSC_E_HANDLER},
      {"{\"id\":\"1-1\",\"handler_id\":true,\"data\":1}", TSC_E_HANDLER},
      {"{\"id\":\"1-1\",\"handler_id\":007,\"data\":1}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1}", TSC_E_DATA},
      {"{\"id\":\"1-1\",\"id\":\"1-2\",\"handler_id\":1,\"data\":1}", TSC_E_DUPLICATE},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":1,\"data\":2}", TSC_E_DUPLICATE},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":1} x", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":1}}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":1,}", TSC_E_JSON},
      {"{\"id\":\"1-1\" \"handler_id\":1,\"data\":1}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":[1,]}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":{\"a\"}}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":{\"a\":1,}}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":{1:2}}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":[1 2]}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":\"\\x\"}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":\"\\u12G4\"}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":\"\\u12\"}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":\"a\nb\"}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":\"open}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":tru}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":nul}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":NaN}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":-}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":1.}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":.5}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":1e}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":01}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":'x'}", TSC_E_JSON},
      {"{id:\"1-1\",\"handler_id\":1,\"data\":1}", TSC_E_JSON},
      {"{\"id\":\"1-1\",\"handler_id\":1,\"data\":{\"a\":\"}\"}", TSC_E_JSON},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int rc = parse(cases[i].text, &e);
    if (rc != cases[i].rc)
      fprintf(stderr, "case %zu: %s -> %d, want %d\n", i, cases[i].text, rc, cases[i].rc);
    CHECK(rc == cases[i].rc);
  }
  /* A NUL byte inside the text is a control character, not an end. */
  const char nul[] = "{\"id\":\"1-1\",\"handler_id\":1,\"data\":\"a\0b\"}";
  CHECK(tsc_parse_envelope(nul, sizeof(nul) - 1, &e) == TSC_E_JSON);
  /* Unclosed nesting far deeper than the limit is refused, not overflowed. */
  static char deep[100000];
  memset(deep, '[', sizeof(deep));
  memcpy(deep, "{\"id\":\"1-1\",\"handler_id\":1,\"data\":", 34);
  CHECK(tsc_parse_envelope(deep, sizeof(deep), &e) == TSC_E_DEPTH);
}

static void test_backoff(void)
{
  const uint32_t retry = 1000, max = 30000;
  CHECK(tsc_backoff(retry, max, 0, 0) == 0);
  CHECK(tsc_backoff(retry, max, 0, UINT32_MAX) == retry);
  uint32_t prev_lo = 0;
  for (uint32_t n = 1; n < 80; n++) {
    uint32_t lo = tsc_backoff(retry, max, n, 0), hi = tsc_backoff(retry, max, n, UINT32_MAX);
    CHECK(lo >= retry && hi <= max && lo <= hi);
    CHECK(lo >= prev_lo); /* grows, then stays at the cap */
    if (n <= 4)
      CHECK(hi == retry << n && lo == (retry << n) / 2);
    if (n >= 5)
      CHECK(hi == max && lo == max / 2);
    for (uint32_t r = 1; r < 1000; r++) {
      uint32_t d = tsc_backoff(retry, max, n, r * 4294967u);
      CHECK(d >= lo && d <= hi);
    }
    prev_lo = lo;
  }
  CHECK(tsc_backoff(retry, max, 2, 1u << 31) > tsc_backoff(retry, max, 2, 0)); /* jitter */
  /* A cap below the interval wins. */
  CHECK(tsc_backoff(5000, 100, 0, UINT32_MAX) == 100);
  CHECK(tsc_backoff(5000, 100, 3, 0) == 100 && tsc_backoff(5000, 100, 3, UINT32_MAX) == 100);
  /* Extremes do not overflow. */
  CHECK(tsc_backoff(UINT32_MAX, UINT32_MAX, 40, UINT32_MAX) == UINT32_MAX);
  CHECK(tsc_backoff(0, 0, 7, 12345) == 0);
}

static uint32_t msg(struct tsc *c, const char *id)
{
  char buf[256];
  snprintf(buf, sizeof(buf), "{\"id\":\"%s\",\"handler_id\":1,\"data\":{\"id\":\"%s\"}}", id, id);
  return tsc_on_message(c, buf, (uint32_t)strlen(buf));
}

static int last_is(const struct tsc *c, const char *want)
{
  uint32_t n;
  const char *s = tsc_last_id(c, &n);
  return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* Start and get to open: returns the client ready for stream events. */
static void open_client(struct tsc *c)
{
  tsc_init(c, 1000, 30000, 5000, 42);
  CHECK(tsc_state(c) == TSC_IDLE);
  CHECK(tsc_on_start(c) == (TSC_DO_STATE | TSC_DO_TOKEN | TSC_DO_TIMER));
  CHECK(tsc_state(c) == TSC_CONNECTING && tsc_delay(c) == 5000);
  CHECK(tsc_on_open(c) == 0); /* no EventSource yet */
  CHECK(tsc_on_message(c, "x", 1) == 0);
  CHECK(tsc_on_token(c, 1) == TSC_DO_OPEN);
  CHECK(tsc_on_token(c, 1) == 0);
  CHECK(tsc_on_open(c) == (TSC_DO_CANCEL | TSC_DO_STATE));
  CHECK(tsc_state(c) == TSC_OPEN);
}

static void test_dedup(void)
{
  struct tsc c;
  open_client(&c);
  CHECK(last_is(&c, ""));
  CHECK(msg(&c, "5-1") == TSC_DO_DELIVER && last_is(&c, "5-1"));
  CHECK(tsc_envelope(&c)->id.seq == 1);
  CHECK(msg(&c, "5-2") == TSC_DO_DELIVER);
  CHECK(msg(&c, "5-2") == 0);
  CHECK(msg(&c, "5-1") == 0 && last_is(&c, "5-2"));
  CHECK(msg(&c, "5-10") == TSC_DO_DELIVER); /* numeric, not text, order */
  CHECK(msg(&c, "5-9") == 0);
  CHECK(msg(&c, "6-1") == TSC_DO_DELIVER); /* a later epoch */
  CHECK(msg(&c, "5-99") == 0);
  /* A reset's position replaces the last id, even one sorting before it. */
  CHECK(tsc_on_reset(&c, "4-7", 3) == TSC_DO_RESET && last_is(&c, "4-7"));
  CHECK(msg(&c, "4-7") == 0);
  CHECK(msg(&c, "4-8") == TSC_DO_DELIVER && last_is(&c, "4-8"));
  /* A reset without a usable id accepts whatever comes next. */
  CHECK(tsc_on_reset(&c, "", 0) == TSC_DO_RESET && last_is(&c, ""));
  CHECK(msg(&c, "1-1") == TSC_DO_DELIVER);
  /* A malformed envelope is reported and changes nothing. */
  CHECK(tsc_on_message(&c, "{\"id\":\"9-9\"}", 12) == TSC_DO_ERROR);
  CHECK(tsc_error_type(&c) == TSC_ERR_PARSE && tsc_error_why(&c) == TSC_WHY_PARSE - TSC_E_HANDLER);
  CHECK(tsc_on_message(&c, 0, 5) == TSC_DO_ERROR && tsc_error_why(&c) == TSC_WHY_PARSE - TSC_E_SIZE);
  CHECK(last_is(&c, "1-1"));
  CHECK(msg(&c, "1-2") == TSC_DO_DELIVER);
}

static void test_native_retry(void)
{
  struct tsc c;
  open_client(&c);
  CHECK(msg(&c, "7-1") == TSC_DO_DELIVER);
  /* The stream broke; the browser retries: report once, start the timeout. */
  CHECK(tsc_on_error(&c, 0) == (TSC_DO_STATE | TSC_DO_TIMER | TSC_DO_ERROR));
  CHECK(tsc_state(&c) == TSC_CONNECTING && tsc_error_type(&c) == TSC_ERR_CONNECT);
  CHECK(tsc_delay(&c) == 5000);
  CHECK(tsc_on_error(&c, 0) == 0);
  CHECK(tsc_on_open(&c) == (TSC_DO_CANCEL | TSC_DO_STATE));
  CHECK(msg(&c, "7-1") == 0); /* replayed across the retry: not twice */
  CHECK(msg(&c, "7-2") == TSC_DO_DELIVER);
  /* The retries never open: timeout, then a manual reconnect with the same token. */
  CHECK(tsc_on_error(&c, 0) != 0);
  CHECK(tsc_on_timer(&c) == (TSC_DO_ERROR | TSC_DO_CLOSE | TSC_DO_STATE | TSC_DO_TIMER));
  CHECK(tsc_error_type(&c) == TSC_ERR_TIMEOUT && tsc_state(&c) == TSC_BACKOFF);
  CHECK(tsc_delay(&c) <= 1000); /* first manual reconnect after a healthy stream */
  CHECK(tsc_on_message(&c, "x", 1) == 0 && tsc_on_error(&c, 0) == 0); /* stale events */
  CHECK(tsc_on_timer(&c) == (TSC_DO_STATE | TSC_DO_TIMER | TSC_DO_OPEN));
  CHECK(tsc_state(&c) == TSC_CONNECTING && tsc_delay(&c) == 5000);
  /* An error before any open in a connecting phase is reported once too. */
  CHECK(tsc_on_error(&c, 0) == TSC_DO_ERROR);
  CHECK(tsc_on_error(&c, 0) == 0);
  CHECK(last_is(&c, "7-2"));
}

static void test_auth_paths(void)
{
  struct tsc c;
  open_client(&c);
  /* tinysse.auth: no error, a quick rotation with a new token. */
  CHECK(tsc_on_auth(&c) == (TSC_DO_CLOSE | TSC_DO_STATE | TSC_DO_TIMER));
  CHECK(tsc_state(&c) == TSC_BACKOFF && tsc_delay(&c) <= 1000);
  CHECK(tsc_on_auth(&c) == 0);
  CHECK(tsc_on_timer(&c) == (TSC_DO_STATE | TSC_DO_TIMER | TSC_DO_TOKEN));
  /* The provider fails: auth error, backoff, ask again. */
  CHECK(tsc_on_token(&c, 0) == (TSC_DO_ERROR | TSC_DO_CLOSE | TSC_DO_STATE | TSC_DO_TIMER));
  CHECK(tsc_error_type(&c) == TSC_ERR_AUTH && tsc_error_why(&c) == TSC_WHY_TOKEN);
  uint32_t d1 = tsc_delay(&c);
  CHECK(d1 >= 1000 && d1 <= 2000);
  CHECK(tsc_on_timer(&c) & TSC_DO_TOKEN);
  CHECK(tsc_on_token(&c, 1) == TSC_DO_OPEN);
  /* Refused (401): auth error, backoff growing while nothing opens. */
  uint32_t prev_lo = 1000;
  for (int n = 2; n < 12; n++) {
    CHECK(tsc_on_error(&c, 2) == (TSC_DO_ERROR | TSC_DO_CLOSE | TSC_DO_STATE | TSC_DO_TIMER));
    CHECK(tsc_error_type(&c) == TSC_ERR_AUTH && tsc_error_why(&c) == TSC_WHY_REFUSED);
    uint32_t d = tsc_delay(&c), hi = 1000u << n < 30000 ? 1000u << n : 30000;
    CHECK(d >= prev_lo && d >= hi / 2 && d <= hi);
    prev_lo = hi / 2;
    CHECK(tsc_on_timer(&c) == (TSC_DO_STATE | TSC_DO_TIMER | TSC_DO_TOKEN));
    CHECK(tsc_on_token(&c, 1) == TSC_DO_OPEN);
  }
  /* An open resets the growth. */
  CHECK(tsc_on_open(&c) != 0);
  CHECK(tsc_on_error(&c, 2) & TSC_DO_TIMER);
  CHECK(tsc_delay(&c) <= 1000);
  /* A provider that never answers: the connect timeout covers it, and its
   * late answer is ignored. */
  CHECK(tsc_on_timer(&c) & TSC_DO_TOKEN);
  CHECK(tsc_on_timer(&c) == (TSC_DO_ERROR | TSC_DO_CLOSE | TSC_DO_STATE | TSC_DO_TIMER));
  CHECK(tsc_error_type(&c) == TSC_ERR_TIMEOUT);
  CHECK(tsc_on_token(&c, 1) == 0);
  CHECK(tsc_on_timer(&c) & TSC_DO_TOKEN); /* asks again */
}

/* Shed by the gateway: a 200 stream that opens, says tinysse.busy and closes;
 * the browser reconnects by itself after the retry: it sent. */
static void test_busy(void)
{
  const uint32_t busy = TSC_DO_ERROR | TSC_DO_STATE | TSC_DO_TIMER;
  struct tsc c;
  open_client(&c);
  CHECK(msg(&c, "3-1") == TSC_DO_DELIVER);
  CHECK(tsc_on_busy(&c, 700) == busy);
  CHECK(tsc_state(&c) == TSC_CONNECTING);
  CHECK(tsc_error_type(&c) == TSC_ERR_BUSY && tsc_error_why(&c) == TSC_WHY_BUSY);
  CHECK(tsc_delay(&c) == 700 + 5000); /* the wait asked for, then the connect timeout */
  CHECK(tsc_on_busy(&c, 700) == 0);   /* only an open stream is shed */
  /* The close that follows: no connect error, no close, no new token. */
  CHECK(tsc_on_error(&c, 0) == 0);
  /* Each retry that is shed again is reported again. */
  for (int i = 0; i < 3; i++) {
    CHECK(tsc_on_open(&c) == (TSC_DO_CANCEL | TSC_DO_STATE));
    CHECK(tsc_on_busy(&c, 200) == busy && tsc_delay(&c) == 5200);
    CHECK(tsc_on_error(&c, 0) == 0);
  }
  /* Let in at last: messages go on from the last id. */
  CHECK(tsc_on_open(&c) == (TSC_DO_CANCEL | TSC_DO_STATE) && tsc_state(&c) == TSC_OPEN);
  CHECK(msg(&c, "3-1") == 0 && msg(&c, "3-2") == TSC_DO_DELIVER);
  /* A real outage after that is reported as before. */
  CHECK(tsc_on_error(&c, 0) == (TSC_DO_STATE | TSC_DO_TIMER | TSC_DO_ERROR));
  CHECK(tsc_error_type(&c) == TSC_ERR_CONNECT);
  /* A huge retry_ms stays within what setTimeout takes. */
  CHECK(tsc_on_open(&c) != 0 && tsc_on_busy(&c, UINT32_MAX) == busy && tsc_delay(&c) == 0x7fffffff);

  /* The open of a shed stream does not reset the backoff: three refusals,
   * then shed opens, then the retries time out; the manual reconnect waits
   * as the fourth failure in a row, not as the first after a healthy stream. */
  open_client(&c);
  for (int n = 0; n < 3; n++) {
    CHECK(tsc_on_error(&c, 2) == (TSC_DO_ERROR | TSC_DO_CLOSE | TSC_DO_STATE | TSC_DO_TIMER));
    CHECK(tsc_on_timer(&c) & TSC_DO_TOKEN);
    CHECK(tsc_on_token(&c, 1) == TSC_DO_OPEN);
  }
  for (int i = 0; i < 2; i++)
    CHECK(tsc_on_open(&c) != 0 && tsc_on_busy(&c, 300) == busy && tsc_on_error(&c, 0) == 0);
  CHECK(tsc_on_timer(&c) == (TSC_DO_ERROR | TSC_DO_CLOSE | TSC_DO_STATE | TSC_DO_TIMER));
  CHECK(tsc_error_type(&c) == TSC_ERR_TIMEOUT && tsc_state(&c) == TSC_BACKOFF);
  CHECK(tsc_delay(&c) >= 4000 && tsc_delay(&c) <= 8000);
  CHECK(tsc_on_timer(&c) == (TSC_DO_STATE | TSC_DO_TIMER | TSC_DO_OPEN)); /* the same token */
  /* A real message on a stream makes it healthy even if it is shed later. */
  CHECK(tsc_on_open(&c) != 0 && msg(&c, "3-3") == TSC_DO_DELIVER);
  CHECK(tsc_on_busy(&c, 300) == busy);
  CHECK(tsc_on_timer(&c) & TSC_DO_CLOSE);
  CHECK(tsc_delay(&c) <= 1000);
  /* Closed: nothing. */
  CHECK(tsc_on_timer(&c) & TSC_DO_OPEN);
  CHECK(tsc_on_open(&c) != 0 && tsc_on_close(&c) != 0 && tsc_on_busy(&c, 300) == 0);
}

static void test_close(void)
{
  struct tsc c;
  open_client(&c);
  CHECK(tsc_on_close(&c) == (TSC_DO_CANCEL | TSC_DO_CLOSE | TSC_DO_STATE));
  CHECK(tsc_state(&c) == TSC_CLOSED);
  CHECK(tsc_on_close(&c) == 0);
  CHECK(msg(&c, "1-1") == 0);
  CHECK(tsc_on_error(&c, 0) == 0 && tsc_on_error(&c, 2) == 0);
  CHECK(tsc_on_auth(&c) == 0 && tsc_on_reset(&c, "1-1", 3) == 0);
  CHECK(tsc_on_timer(&c) == 0 && tsc_on_token(&c, 1) == 0 && tsc_on_open(&c) == 0);
  CHECK(tsc_on_start(&c) == 0);
  /* Closing while backing off or fetching a token. */
  open_client(&c);
  tsc_on_auth(&c);
  CHECK(tsc_on_close(&c) & TSC_DO_CANCEL);
  CHECK(tsc_on_timer(&c) == 0);
  tsc_init(&c, 1000, 30000, 5000, 1);
  tsc_on_start(&c);
  CHECK(tsc_on_close(&c) != 0 && tsc_on_token(&c, 1) == 0);
}

/* Tab sharing: a follower is fed the leader's messages and resets (same
 * checks and dedup), and can take the stream over from its own last id. */
static void test_share(void)
{
  const uint32_t lead = TSC_DO_CANCEL | TSC_DO_CLOSE | TSC_DO_STATE | TSC_DO_TIMER | TSC_DO_TOKEN;
  struct tsc c;
  tsc_init(&c, 1000, 30000, 5000, 7);
  CHECK(tsc_on_follow(&c) == (TSC_DO_CANCEL | TSC_DO_CLOSE) && tsc_state(&c) == TSC_OPEN);
  CHECK(msg(&c, "8-1") == TSC_DO_DELIVER && msg(&c, "8-1") == 0 && msg(&c, "8-3") == TSC_DO_DELIVER);
  CHECK(msg(&c, "8-2") == 0 && last_is(&c, "8-3"));
  CHECK(tsc_on_message(&c, "{}", 2) == TSC_DO_ERROR && tsc_error_type(&c) == TSC_ERR_PARSE);
  CHECK(tsc_on_reset(&c, "9-0", 3) == TSC_DO_RESET && last_is(&c, "9-0"));
  CHECK(tsc_on_timer(&c) == 0); /* no timer while following */
  /* Leading: a token, then a stream; the replay from an earlier id is deduped. */
  CHECK(tsc_on_lead(&c) == lead && tsc_state(&c) == TSC_CONNECTING && tsc_delay(&c) == 5000);
  CHECK(tsc_on_message(&c, "x", 1) == 0); /* no stream before the token */
  CHECK(tsc_on_token(&c, 1) == TSC_DO_OPEN && tsc_on_open(&c) == (TSC_DO_CANCEL | TSC_DO_STATE));
  CHECK(msg(&c, "9-0") == 0 && msg(&c, "9-1") == TSC_DO_DELIVER);
  /* Back to following (the tab froze), and leading again with the same last id. */
  CHECK(tsc_on_follow(&c) == (TSC_DO_CANCEL | TSC_DO_CLOSE) && tsc_state(&c) == TSC_OPEN);
  CHECK(msg(&c, "9-1") == 0 && last_is(&c, "9-1"));
  CHECK(tsc_on_lead(&c) == lead);
  /* A leader that failed a lot starts its backoff afresh after following. */
  for (int i = 0; i < 5; i++) {
    CHECK(tsc_on_token(&c, 0) & TSC_DO_ERROR);
    CHECK(tsc_on_timer(&c) & TSC_DO_TOKEN);
  }
  CHECK(tsc_on_follow(&c) != 0 && tsc_on_lead(&c) == lead);
  CHECK(tsc_on_token(&c, 0) & TSC_DO_TIMER);
  CHECK(tsc_delay(&c) <= 1000);
  /* Closed: neither. */
  CHECK(tsc_on_close(&c) != 0 && tsc_on_follow(&c) == 0 && tsc_on_lead(&c) == 0);
  CHECK(tsc_state(&c) == TSC_CLOSED);
}

int main(void)
{
  test_ids();
  test_envelope_valid();
  test_envelope_truncated();
  test_envelope_malformed();
  test_backoff();
  test_dedup();
  test_native_retry();
  test_auth_paths();
  test_busy();
  test_close();
  test_share();
  if (failures) {
    fprintf(stderr, "test_client: %d check(s) failed\n", failures);
    return 1;
  }
  printf("test_client: all checks passed\n");
  return 0;
}
