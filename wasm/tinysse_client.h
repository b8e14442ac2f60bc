/* The browser client's decisions, in freestanding C: connection state,
 * backoff with jitter, the JSON envelope check, the last id and dedup.
 * Compiled to wasm32 for tinysse.js (through tinysse_wasm.c) and natively for
 * the unit tests. No libc, no allocation: the caller owns the struct tsc.
 *
 * The tsc_on_* step functions take one event and return a mask of TSC_DO_*
 * actions for the caller to carry out (in the order the flags are listed);
 * what an action needs (delay, error, envelope, last id) is read with the
 * getters afterwards. Events that do not fit the current state return 0. */
#ifndef TINYSSE_CLIENT_H
#define TINYSSE_CLIENT_H

#include <stdint.h>

enum tsc_state { TSC_IDLE, TSC_CONNECTING, TSC_OPEN, TSC_BACKOFF, TSC_CLOSED };

enum {
  TSC_DO_CANCEL = 1 << 0,  /* clear the timer */
  TSC_DO_CLOSE = 1 << 1,   /* close the EventSource */
  TSC_DO_STATE = 1 << 2,   /* the state changed: tsc_state() */
  TSC_DO_ERROR = 1 << 3,   /* report tsc_error_type() / tsc_error_why() */
  TSC_DO_RESET = 1 << 4,   /* call the app's onReset */
  TSC_DO_DELIVER = 1 << 5, /* hand tsc_envelope() to onMessage */
  TSC_DO_OPEN = 1 << 6,    /* new EventSource: ?token=<token>&lastEventId=<tsc_last_id> */
  TSC_DO_TOKEN = 1 << 7,   /* ask tokenProvider, then tsc_on_token() */
  TSC_DO_TIMER = 1 << 8,   /* (re)arm the one timer: tsc_delay() ms, then tsc_on_timer() */
};

/* Error types, in the order tinysse.js names them. */
enum tsc_error { TSC_ERR_CONNECT, TSC_ERR_AUTH, TSC_ERR_PARSE, TSC_ERR_TIMEOUT, TSC_ERR_BUSY };

/* Why an error was reported; the parse reasons are TSC_WHY_PARSE - code
 * for the negative codes of tsc_parse_envelope(). */
enum tsc_why {
  TSC_WHY_LOST,    /* connect: the stream broke or could not be reached; the browser retries */
  TSC_WHY_REFUSED, /* auth: the stream was answered with a status other than 200 */
  TSC_WHY_TOKEN,   /* auth: tokenProvider threw, rejected or gave no token */
  TSC_WHY_TIMEOUT, /* timeout: no open within the connect timeout */
  TSC_WHY_BUSY,    /* busy: the gateway shed the stream; the browser retries when it said */
  TSC_WHY_PARSE,
};

/* tsc_parse_envelope() results. */
enum {
  TSC_E_JSON = -1,      /* not JSON: truncated, bad token, trailing bytes */
  TSC_E_OBJECT = -2,    /* not an object */
  TSC_E_ID = -3,        /* id missing, not a string, not "<epoch>-<seq>" in 64 bits */
  TSC_E_HANDLER = -4,   /* handler_id missing or not an integer in 0..255 */
  TSC_E_DATA = -5,      /* data missing */
  TSC_E_DUPLICATE = -6, /* a field appears twice */
  TSC_E_DEPTH = -7,     /* nested deeper than TSC_MAX_DEPTH */
  TSC_E_SIZE = -8,      /* larger than the caller could hold */
};

#define TSC_MAX_DEPTH 256
#define TSC_ID_MAX 48 /* "<u64>-<u64>" is at most 41 bytes */

/* Ids are "<epoch>-<seq>": the gateway's start time in ms and a counter. */
struct tsc_id {
  uint64_t epoch, seq;
};

/* Offsets are into the parsed text; data is the raw JSON text of the value. */
struct tsc_envelope {
  uint32_t id_off, id_len, data_off, data_len, handler_id;
  struct tsc_id id;
};

/* Fields are private; the struct is public only so that callers without an
 * allocator can place it. */
struct tsc {
  enum tsc_state state;
  uint32_t retry_ms, max_delay_ms, connect_timeout_ms;
  uint32_t rng;
  uint32_t failures; /* manual reconnects in a row without an open */
  uint32_t failures_at_open; /* put back if the stream that opened turns out shed */
  uint32_t delay_ms;
  enum tsc_error error;
  int why;
  uint8_t need_token, awaiting_token, reported, have_last;
  struct tsc_id last;
  uint32_t last_len;
  char last_text[TSC_ID_MAX];
  struct tsc_envelope env;
};

/* retry_ms/max_delay_ms bound the backoff; seed feeds the jitter (any value). */
void tsc_init(struct tsc *c, uint32_t retry_ms, uint32_t max_delay_ms, uint32_t connect_timeout_ms,
              uint32_t seed);

uint32_t tsc_on_start(struct tsc *c);
uint32_t tsc_on_token(struct tsc *c, int ok);
uint32_t tsc_on_open(struct tsc *c);
/* An EventSource error event; ready_state is the EventSource's after it:
 * 0 (CONNECTING) means the browser retries by itself, 2 (CLOSED) that the
 * stream was refused with a non-200 status. */
uint32_t tsc_on_error(struct tsc *c, int ready_state);
uint32_t tsc_on_message(struct tsc *c, const char *s, uint32_t n);
/* tinysse.reset; id is the event's lastEventId (the gateway's position). */
uint32_t tsc_on_reset(struct tsc *c, const char *id, uint32_t n);
/* tinysse.auth: the token expired. */
uint32_t tsc_on_auth(struct tsc *c);
/* tinysse.busy: the gateway shed this stream (it answers 200 so that the
 * browser keeps retrying, after retry_ms) and is closing it. Not a failure:
 * the close that follows is not reported, and the connect timeout starts
 * after retry_ms. */
uint32_t tsc_on_busy(struct tsc *c, uint32_t retry_ms);
uint32_t tsc_on_timer(struct tsc *c);
uint32_t tsc_on_close(struct tsc *c);
/* Tab sharing (tinysse.js, share): another tab holds the stream and feeds
 * this one its messages and resets, which count as on an open stream (the
 * same envelope check, last id and dedup); no stream, timer or token here.
 * The state becomes TSC_OPEN without TSC_DO_STATE: the caller shows the
 * leader's state instead. */
uint32_t tsc_on_follow(struct tsc *c);
/* This tab takes the stream over: a new token, then a stream. */
uint32_t tsc_on_lead(struct tsc *c);

enum tsc_state tsc_state(const struct tsc *c);
uint32_t tsc_delay(const struct tsc *c);
enum tsc_error tsc_error_type(const struct tsc *c);
int tsc_error_why(const struct tsc *c);
const struct tsc_envelope *tsc_envelope(const struct tsc *c);
/* The last id delivered (or taken from a reset); length 0 when none. */
const char *tsc_last_id(const struct tsc *c, uint32_t *len);

/* The n-th manual reconnect in a row (n = 0 after a healthy stream) waits
 * r/2^32 of the way through [0, retry] for n = 0, else through
 * [max(retry, hi/2), hi] with hi = min(max_delay, retry * 2^n). */
uint32_t tsc_backoff(uint32_t retry_ms, uint32_t max_delay_ms, uint32_t n, uint32_t r);

/* 0 or -1. */
int tsc_id_parse(const char *s, uint32_t n, struct tsc_id *id);
/* <0, 0, >0 as a is before, equal to, after b. */
int tsc_id_cmp(const struct tsc_id *a, const struct tsc_id *b);

/* Checks {"id":"<epoch>-<seq>","handler_id":0-255,"data":<JSON>} (other
 * fields are allowed and skipped): 0, or a negative TSC_E_* code. */
int tsc_parse_envelope(const char *s, uint32_t n, struct tsc_envelope *e);

#endif
