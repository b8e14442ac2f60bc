/* The browser client's state machine and envelope parser (see the header).
 * Freestanding: it must build with clang --target=wasm32 -nostdlib, so it
 * uses no libc and copies bytes by hand. */
#include "tinysse_client.h"

/* ---- ids ---- */

static int parse_u64(const char *s, uint32_t n, uint64_t *out)
{
  uint64_t v = 0;
  if (n == 0)
    return -1;
  for (uint32_t i = 0; i < n; i++) {
    unsigned d = (unsigned char)s[i] - '0';
    if (d > 9 || v > (UINT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int tsc_id_parse(const char *s, uint32_t n, struct tsc_id *id)
{
  uint32_t dash = 0;
  if (n >= TSC_ID_MAX)
    return -1;
  while (dash < n && s[dash] != '-')
    dash++;
  if (dash == n)
    return -1;
  return parse_u64(s, dash, &id->epoch) == 0 &&
                 parse_u64(s + dash + 1, n - dash - 1, &id->seq) == 0
             ? 0
             : -1;
}

int tsc_id_cmp(const struct tsc_id *a, const struct tsc_id *b)
{
  if (a->epoch != b->epoch)
    return a->epoch < b->epoch ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* ---- JSON ---- */

static uint32_t skip_ws(const char *s, uint32_t n, uint32_t i)
{
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
    i++;
  return i;
}

static int is_digit(char c)
{
  return c >= '0' && c <= '9';
}

static int is_hex(char c)
{
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* s[*i] is the opening quote; on success *i is just past the closing one.
 * The text is UTF-8 from the browser's own decoder, so only the JSON rules
 * (no raw control characters, known escapes) are checked. */
static int skip_string(const char *s, uint32_t n, uint32_t *i)
{
  uint32_t j = *i + 1;
  while (j < n) {
    unsigned char c = (unsigned char)s[j];
    if (c == '"') {
      *i = j + 1;
      return 0;
    }
    if (c < 0x20)
      return -1;
    if (c == '\\') {
      if (++j >= n)
        return -1;
      switch (s[j]) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        break;
      case 'u':
        if (n - j < 5 || !is_hex(s[j + 1]) || !is_hex(s[j + 2]) || !is_hex(s[j + 3]) ||
            !is_hex(s[j + 4]))
          return -1;
        j += 4;
        break;
      default:
        return -1;
      }
    }
    j++;
  }
  return -1;
}

static uint32_t skip_digits(const char *s, uint32_t n, uint32_t i)
{
  while (i < n && is_digit(s[i]))
    i++;
  return i;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int skip_number(const char *s, uint32_t n, uint32_t *i)
{
  uint32_t j = *i, k;
  if (j < n && s[j] == '-')
    j++;
  if (j < n && s[j] == '0')
    j++;
  else if ((k = skip_digits(s, n, j)) > j)
    j = k;
  else
    return -1;
  if (j < n && s[j] == '.') {
    if ((k = skip_digits(s, n, j + 1)) == j + 1)
      return -1;
    j = k;
  }
  if (j < n && (s[j] == 'e' || s[j] == 'E')) {
    j++;
    if (j < n && (s[j] == '+' || s[j] == '-'))
      j++;
    if ((k = skip_digits(s, n, j)) == j)
      return -1;
    j = k;
  }
  *i = j;
  return 0;
}

static int skip_word(const char *s, uint32_t n, uint32_t *i, const char *w)
{
  uint32_t j = *i;
  for (; *w; w++, j++)
    if (j >= n || s[j] != *w)
      return -1;
  *i = j;
  return 0;
}

/* `"key" :` with the whitespace around it; *i ends after the colon. */
static int skip_key(const char *s, uint32_t n, uint32_t *i)
{
  uint32_t j = skip_ws(s, n, *i);
  if (j >= n || s[j] != '"' || skip_string(s, n, &j) != 0)
    return -1;
  j = skip_ws(s, n, j);
  if (j >= n || s[j] != ':')
    return -1;
  *i = j + 1;
  return 0;
}

/* One JSON value starting at *i (after optional whitespace); *i ends just
 * past it. Iterative, with an explicit stack, so nesting cannot exhaust the
 * (small) wasm stack: 0 or TSC_E_JSON / TSC_E_DEPTH. */
static int skip_value(const char *s, uint32_t n, uint32_t *i)
{
  uint8_t in_object[TSC_MAX_DEPTH];
  uint32_t depth = 0, j = *i;
  for (;;) {
    j = skip_ws(s, n, j);
    if (j >= n)
      return TSC_E_JSON;
    char c = s[j];
    int rc = 0;
    if (c == '{' || c == '[') {
      if (depth == TSC_MAX_DEPTH)
        return TSC_E_DEPTH;
      in_object[depth++] = c == '{';
      j = skip_ws(s, n, j + 1);
      if (j < n && s[j] == (c == '{' ? '}' : ']')) {
        depth--;
        j++;
      } else {
        if (c == '{' && skip_key(s, n, &j) != 0)
          return TSC_E_JSON;
        continue; /* to the first element */
      }
    } else if (c == '"') {
      rc = skip_string(s, n, &j);
    } else if (c == 't') {
      rc = skip_word(s, n, &j, "true");
    } else if (c == 'f') {
      rc = skip_word(s, n, &j, "false");
    } else if (c == 'n') {
      rc = skip_word(s, n, &j, "null");
    } else {
      rc = skip_number(s, n, &j);
    }
    if (rc != 0)
      return TSC_E_JSON;
    /* A value ended: close containers or move to the next element. */
    for (;;) {
      if (depth == 0) {
        *i = j;
        return 0;
      }
      j = skip_ws(s, n, j);
      if (j >= n)
        return TSC_E_JSON;
      if (s[j] == (in_object[depth - 1] ? '}' : ']')) {
        depth--;
        j++;
        continue;
      }
      if (s[j] != ',')
        return TSC_E_JSON;
      j++;
      if (in_object[depth - 1] && skip_key(s, n, &j) != 0)
        return TSC_E_JSON;
      break;
    }
  }
}

static int key_is(const char *s, uint32_t from, uint32_t to, const char *w)
{
  for (; from < to && *w; from++, w++)
    if (s[from] != *w)
      return 0;
  return from == to && !*w;
}

int tsc_parse_envelope(const char *s, uint32_t n, struct tsc_envelope *e)
{
  enum { HAVE_ID = 1, HAVE_HANDLER = 2, HAVE_DATA = 4 };
  unsigned have = 0;
  uint32_t i = skip_ws(s, n, 0);
  if (i >= n)
    return TSC_E_JSON;
  if (s[i] != '{') {
    int rc = skip_value(s, n, &i);
    return rc == TSC_E_DEPTH ? rc : rc != 0 || skip_ws(s, n, i) != n ? TSC_E_JSON : TSC_E_OBJECT;
  }
  i = skip_ws(s, n, i + 1);
  if (i < n && s[i] == '}') {
    i++;
  } else {
    for (;;) {
      i = skip_ws(s, n, i);
      if (i >= n || s[i] != '"')
        return TSC_E_JSON;
      uint32_t key = i + 1;
      if (skip_string(s, n, &i) != 0)
        return TSC_E_JSON;
      uint32_t key_end = i - 1;
      i = skip_ws(s, n, i);
      if (i >= n || s[i] != ':')
        return TSC_E_JSON;
      uint32_t v = skip_ws(s, n, i + 1);
      i = v;
      int rc = skip_value(s, n, &i);
      if (rc != 0)
        return rc;
      unsigned field = key_is(s, key, key_end, "id")           ? HAVE_ID
                       : key_is(s, key, key_end, "handler_id") ? HAVE_HANDLER
                       : key_is(s, key, key_end, "data")       ? HAVE_DATA
                                                               : 0;
      if (have & field)
        return TSC_E_DUPLICATE;
      have |= field;
      if (field == HAVE_ID) {
        if (s[v] != '"' || tsc_id_parse(s + v + 1, i - v - 2, &e->id) != 0)
          return TSC_E_ID;
        e->id_off = v + 1;
        e->id_len = i - v - 2;
      } else if (field == HAVE_HANDLER) {
        /* Plain digits only (the number grammar already refused leading
         * zeros); more than three cannot be <= 255. */
        uint32_t h = 0, len = i - v;
        if (len > 3)
          return TSC_E_HANDLER;
        for (uint32_t k = v; k < i; k++) {
          if (!is_digit(s[k]))
            return TSC_E_HANDLER;
          h = h * 10 + (uint32_t)(s[k] - '0');
        }
        if (h > 255)
          return TSC_E_HANDLER;
        e->handler_id = h;
      } else if (field == HAVE_DATA) {
        e->data_off = v;
        e->data_len = i - v;
      }
      i = skip_ws(s, n, i);
      if (i < n && s[i] == ',') {
        i++;
        continue;
      }
      if (i < n && s[i] == '}') {
        i++;
        break;
      }
      return TSC_E_JSON;
    }
  }
  if (skip_ws(s, n, i) != n)
    return TSC_E_JSON;
  if (!(have & HAVE_ID))
    return TSC_E_ID;
  if (!(have & HAVE_HANDLER))
    return TSC_E_HANDLER;
  if (!(have & HAVE_DATA))
    return TSC_E_DATA;
  return 0;
}

/* ---- backoff ---- */

uint32_t tsc_backoff(uint32_t retry_ms, uint32_t max_delay_ms, uint32_t n, uint32_t r)
{
  uint64_t lo = 0, hi = retry_ms < max_delay_ms ? retry_ms : max_delay_ms;
  if (n > 0) {
    hi = (uint64_t)retry_ms << (n < 32 ? n : 32);
    if (hi > max_delay_ms)
      hi = max_delay_ms;
    lo = hi / 2 > retry_ms ? hi / 2 : retry_ms;
    if (lo > hi)
      lo = hi;
  }
  return (uint32_t)(lo + (((hi - lo + 1) * r) >> 32));
}

static uint32_t next_random(struct tsc *c)
{
  /* xorshift32: jitter only needs to differ between clients. */
  uint32_t x = c->rng;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return c->rng = x;
}

/* ---- the state machine ---- */

void tsc_init(struct tsc *c, uint32_t retry_ms, uint32_t max_delay_ms, uint32_t connect_timeout_ms,
              uint32_t seed)
{
  unsigned char *p = (unsigned char *)c;
  for (uint32_t i = 0; i < sizeof(*c); i++)
    p[i] = 0;
  c->state = TSC_IDLE;
  c->retry_ms = retry_ms;
  c->max_delay_ms = max_delay_ms;
  c->connect_timeout_ms = connect_timeout_ms;
  c->rng = seed ? seed : 0x9e3779b9u;
}

static uint32_t fail(struct tsc *c, enum tsc_error type, int why)
{
  c->error = type;
  c->why = why;
  return TSC_DO_ERROR;
}

/* Start a connection attempt: with a new token, or straight to the
 * EventSource with the one we have. Either way the connect timeout runs. */
static uint32_t begin_connecting(struct tsc *c, int with_token)
{
  c->state = TSC_CONNECTING;
  c->reported = 0;
  c->awaiting_token = (uint8_t)with_token;
  c->delay_ms = c->connect_timeout_ms;
  return TSC_DO_STATE | TSC_DO_TIMER | (with_token ? TSC_DO_TOKEN : TSC_DO_OPEN);
}

/* Close whatever stream there is and reconnect by hand after a backoff. */
static uint32_t back_off(struct tsc *c, int with_token)
{
  c->state = TSC_BACKOFF;
  c->need_token = (uint8_t)with_token;
  c->awaiting_token = 0;
  c->delay_ms = tsc_backoff(c->retry_ms, c->max_delay_ms, c->failures, next_random(c));
  if (c->failures < 64)
    c->failures++;
  return TSC_DO_CLOSE | TSC_DO_STATE | TSC_DO_TIMER;
}

/* An EventSource exists: its events count. */
static int streaming(const struct tsc *c)
{
  return c->state == TSC_OPEN || (c->state == TSC_CONNECTING && !c->awaiting_token);
}

uint32_t tsc_on_start(struct tsc *c)
{
  return c->state == TSC_IDLE ? begin_connecting(c, 1) : 0;
}

uint32_t tsc_on_token(struct tsc *c, int ok)
{
  if (c->state != TSC_CONNECTING || !c->awaiting_token)
    return 0; /* an answer that came too late: a timeout moved on */
  c->awaiting_token = 0;
  if (ok)
    return TSC_DO_OPEN;
  return fail(c, TSC_ERR_AUTH, TSC_WHY_TOKEN) | back_off(c, 1);
}

uint32_t tsc_on_open(struct tsc *c)
{
  if (c->state != TSC_CONNECTING || c->awaiting_token)
    return 0;
  c->state = TSC_OPEN;
  /* A shed stream opens too (tsc_on_busy puts the count back). */
  c->failures_at_open = c->failures;
  c->failures = 0;
  return TSC_DO_CANCEL | TSC_DO_STATE;
}

uint32_t tsc_on_error(struct tsc *c, int ready_state)
{
  if (!streaming(c))
    return 0;
  if (ready_state == 2) /* refused: the status is hidden, most often 401 */
    return fail(c, TSC_ERR_AUTH, TSC_WHY_REFUSED) | back_off(c, 1);
  /* The browser retries by itself (with the Last-Event-ID header); report
   * the outage once and give the retries the connect timeout. */
  uint32_t a = 0;
  if (c->state == TSC_OPEN) {
    c->state = TSC_CONNECTING;
    c->reported = 0;
    c->delay_ms = c->connect_timeout_ms;
    a = TSC_DO_STATE | TSC_DO_TIMER;
  }
  if (!c->reported) {
    c->reported = 1;
    a |= fail(c, TSC_ERR_CONNECT, TSC_WHY_LOST);
  }
  return a;
}

uint32_t tsc_on_auth(struct tsc *c)
{
  return streaming(c) ? back_off(c, 1) : 0;
}

uint32_t tsc_on_busy(struct tsc *c, uint32_t retry_ms)
{
  uint64_t wait = (uint64_t)retry_ms + c->connect_timeout_ms;
  if (c->state != TSC_OPEN)
    return 0;
  /* The open was no sign of health, and the browser reconnects by itself:
   * no backoff of ours, no new token, and no connect error for the close. */
  c->failures = c->failures_at_open;
  c->state = TSC_CONNECTING;
  c->reported = 1;
  c->delay_ms = wait < 0x7fffffff ? (uint32_t)wait : 0x7fffffff; /* setTimeout's limit */
  return fail(c, TSC_ERR_BUSY, TSC_WHY_BUSY) | TSC_DO_STATE | TSC_DO_TIMER;
}

uint32_t tsc_on_timer(struct tsc *c)
{
  if (c->state == TSC_BACKOFF)
    return begin_connecting(c, c->need_token);
  if (c->state == TSC_CONNECTING)
    return fail(c, TSC_ERR_TIMEOUT, TSC_WHY_TIMEOUT) | back_off(c, c->awaiting_token);
  return 0;
}

static void set_last(struct tsc *c, const char *s, uint32_t n, const struct tsc_id *id)
{
  c->last = *id;
  c->have_last = 1;
  for (uint32_t i = 0; i < n; i++)
    c->last_text[i] = s[i];
  c->last_len = n;
}

uint32_t tsc_on_message(struct tsc *c, const char *s, uint32_t n)
{
  if (!streaming(c))
    return 0;
  int rc = s ? tsc_parse_envelope(s, n, &c->env) : TSC_E_SIZE;
  if (rc != 0)
    return fail(c, TSC_ERR_PARSE, TSC_WHY_PARSE - rc);
  /* Not after the last one delivered: a replayed or repeated message. */
  if (c->have_last && tsc_id_cmp(&c->env.id, &c->last) <= 0)
    return 0;
  set_last(c, s + c->env.id_off, c->env.id_len, &c->env.id);
  c->failures_at_open = 0; /* a real message: this stream is not a shed one */
  return TSC_DO_DELIVER;
}

uint32_t tsc_on_reset(struct tsc *c, const char *id, uint32_t n)
{
  struct tsc_id parsed;
  if (!streaming(c))
    return 0;
  /* The gateway's position replaces ours even when it sorts before it (a
   * restarted gateway with a clock behind), so its messages are taken. */
  if (id && n < TSC_ID_MAX && tsc_id_parse(id, n, &parsed) == 0)
    set_last(c, id, n, &parsed);
  else
    c->have_last = 0, c->last_len = 0;
  return TSC_DO_RESET;
}

uint32_t tsc_on_close(struct tsc *c)
{
  if (c->state == TSC_CLOSED)
    return 0;
  c->state = TSC_CLOSED;
  return TSC_DO_CANCEL | TSC_DO_CLOSE | TSC_DO_STATE;
}

uint32_t tsc_on_follow(struct tsc *c)
{
  if (c->state == TSC_CLOSED)
    return 0;
  c->state = TSC_OPEN;
  c->failures = 0;
  return TSC_DO_CANCEL | TSC_DO_CLOSE;
}

uint32_t tsc_on_lead(struct tsc *c)
{
  if (c->state == TSC_CLOSED)
    return 0;
  c->failures = 0;
  return TSC_DO_CANCEL | TSC_DO_CLOSE | begin_connecting(c, 1);
}

enum tsc_state tsc_state(const struct tsc *c)
{
  return c->state;
}

uint32_t tsc_delay(const struct tsc *c)
{
  return c->delay_ms;
}

enum tsc_error tsc_error_type(const struct tsc *c)
{
  return c->error;
}

int tsc_error_why(const struct tsc *c)
{
  return c->why;
}

const struct tsc_envelope *tsc_envelope(const struct tsc *c)
{
  return &c->env;
}

const char *tsc_last_id(const struct tsc *c, uint32_t *len)
{
  *len = c->last_len;
  return c->last_text;
}
