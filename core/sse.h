/* SSE framing: builds immutable, reference-counted frames once per message;
 * every recipient's output queue holds a reference, never a copy. */
#ifndef TINYSSE_SSE_H
#define TINYSSE_SSE_H

#include <stddef.h>
#include <stdatomic.h>

struct evbuffer;

struct frame {
  atomic_uint refs;
  size_t len;
  char data[];
};

/* A frame holding a copy of len bytes; refs starts at 1. NULL on OOM. */
struct frame *frame_new(const char *data, size_t len);
struct frame *frame_ref(struct frame *f);
void frame_unref(struct frame *f); /* NULL is fine */
/* Appends a reference to f to out (the frame lives until out drains). 0/-1. */
int frame_add_to(struct frame *f, struct evbuffer *out);

/* Frames a message:
 *   id: <id>\n [event: <event>\n] data: {"id":"<id>","handler_id":N,"data":<json>}\n\n
 * json must be valid JSON; CR/LF in it split the envelope over several data:
 * lines as the SSE standard allows. event may be NULL. NULL on OOM. */
struct frame *sse_frame_message(const char *id, const char *event, int handler_id,
                                const char *json, size_t json_len);
/* Frames a control event (tinysse.reset, tinysse.auth); id may be NULL;
 * json must be non-empty (an event without data is dropped by browsers). */
struct frame *sse_frame_event(const char *id, const char *event, const char *json);
/* The shared `: ping` heartbeat frame (never freed). */
struct frame *sse_ping_frame(void);
/* True when s can be an event name: 1..64 printable ASCII bytes, no spaces. */
int sse_event_name_ok(const char *s);

#endif
