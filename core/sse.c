/* SSE framing. A frame is built once per message and then only referenced
 * (evbuffer_add_reference), so fan-out never copies the bytes. */
#include "sse.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

struct frame *frame_new(const char *data, size_t len)
{
  struct frame *f = malloc(sizeof(*f) + len + 1);
  if (!f)
    return NULL;
  atomic_init(&f->refs, 1);
  f->len = len;
  if (len)
    memcpy(f->data, data, len);
  f->data[len] = '\0';
  return f;
}

struct frame *frame_ref(struct frame *f)
{
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return f;
}

void frame_unref(struct frame *f)
{
  if (f && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
    free(f);
}

static void frame_cleanup(const void *data, size_t len, void *arg)
{
  (void)data;
  (void)len;
  frame_unref(arg);
}

int frame_add_to(struct frame *f, struct evbuffer *out)
{
  frame_ref(f);
  if (evbuffer_add_reference(out, f->data, f->len, frame_cleanup, f) != 0) {
    frame_unref(f);
    return -1;
  }
  return 0;
}

/* A growable byte builder local to this file; frames are small. */
struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 128;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Writes text as data: lines, starting a new line at every CR, LF or CRLF. */
static void sb_data_lines(struct sbuf *b, const char *s, size_t n, int *at_line_start)
{
  size_t i = 0;
  while (i < n) {
    if (*at_line_start) {
      sb_puts(b, "data: ");
      *at_line_start = 0;
    }
    size_t j = i;
    while (j < n && s[j] != '\r' && s[j] != '\n')
      j++;
    sb_put(b, s + i, j - i);
    if (j == n)
      break;
    sb_put(b, "\n", 1);
    *at_line_start = 1;
    if (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n')
      j++;
    i = j + 1;
  }
}

static struct frame *sb_to_frame(struct sbuf *b)
{
  struct frame *f = b->oom ? NULL : frame_new(b->p, b->len);
  free(b->p);
  return f;
}

struct frame *sse_frame_message(const char *id, const char *event, int handler_id,
                                const char *json, size_t json_len)
{
  struct sbuf b = {0};
  char head[128];
  int at_line_start = 1;

  sb_puts(&b, "id: ");
  sb_puts(&b, id);
  sb_puts(&b, "\n");
  if (event) {
    sb_puts(&b, "event: ");
    sb_puts(&b, event);
    sb_puts(&b, "\n");
  }
  snprintf(head, sizeof(head), "{\"id\":\"%s\",\"handler_id\":%d,\"data\":", id, handler_id);
  sb_data_lines(&b, head, strlen(head), &at_line_start);
  sb_data_lines(&b, json, json_len, &at_line_start);
  if (at_line_start)
    sb_puts(&b, "data: ");
  sb_puts(&b, "}\n\n");
  return sb_to_frame(&b);
}

struct frame *sse_frame_event(const char *id, const char *event, const char *json)
{
  struct sbuf b = {0};
  int at_line_start = 1;

  if (id) {
    sb_puts(&b, "id: ");
    sb_puts(&b, id);
    sb_puts(&b, "\n");
  }
  sb_puts(&b, "event: ");
  sb_puts(&b, event);
  sb_puts(&b, "\n");
  sb_data_lines(&b, json, strlen(json), &at_line_start);
  sb_puts(&b, "\n\n");
  return sb_to_frame(&b);
}

static struct frame *ping;
static void make_ping(void)
{
  ping = frame_new(": ping\n\n", 8);
}

struct frame *sse_ping_frame(void)
{
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, make_ping);
  return ping;
}

int sse_event_name_ok(const char *s)
{
  size_t n = 0;
  for (; s[n]; n++) {
    unsigned char c = (unsigned char)s[n];
    if (c < 0x21 || c == 0x7f || n >= 64)
      return 0;
  }
  return n > 0;
}
