/* libFuzzer target: SSE framing of arbitrary payload bytes. Whatever the
 * payload holds, the frame must parse as exactly one event whose data,
 * joined the way EventSource joins it, is the envelope with the payload's
 * line breaks normalised to LF. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The payload as EventSource gives it back: CRLF, CR, LF all become LF. */
static size_t normalise(const char *in, size_t n, char *out)
{
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (in[i] == '\r') {
      out[o++] = '\n';
      if (i + 1 < n && in[i + 1] == '\n')
        i++;
    } else {
      out[o++] = in[i];
    }
  }
  return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *payload = (const char *)data;
  struct frame *f = sse_frame_message("7-9", size > 3 && data[0] == 'E' ? "ev.name" : NULL, 3,
                                      payload, size);
  assert(f);
  /* Parse: split lines on LF (the frame only uses LF), collect data. */
  char *joined = malloc(f->len + 1);
  size_t jl = 0, blank_lines = 0;
  int ndata = 0;
  const char *p = f->data, *end = f->data + f->len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    assert(nl); /* every line is terminated */
    size_t len = (size_t)(nl - p);
    assert(!memchr(p, '\r', len));
    if (len == 0) {
      blank_lines++;
      assert(nl + 1 == end); /* the only blank line ends the frame */
    } else if (len >= 6 && memcmp(p, "data: ", 6) == 0) {
      if (ndata++)
        joined[jl++] = '\n';
      memcpy(joined + jl, p + 6, len - 6);
      jl += len - 6;
    } else {
      assert((len >= 4 && memcmp(p, "id: ", 4) == 0) || (len >= 7 && memcmp(p, "event: ", 7) == 0));
    }
    p = nl + 1;
  }
  assert(blank_lines == 1);
  char *want = malloc(size + 64);
  int hl = snprintf(want, 64, "{\"id\":\"7-9\",\"handler_id\":3,\"data\":");
  size_t wl = (size_t)hl + normalise(payload, size, want + hl);
  want[wl++] = '}';
  assert(jl == wl && memcmp(joined, want, wl) == 0);
  free(want);
  free(joined);
  frame_unref(f);
  return 0;
}
