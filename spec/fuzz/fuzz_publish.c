/* libFuzzer target: publish bodies, JSON and raw form. The first byte picks
 * the form; for the raw form the input is split at NULs into targets,
 * handler_id, event and body. Every accepted batch must be well formed. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "publish_parse.h"
#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(struct pub_batch *b)
{
  if (!b)
    return;
  size_t n = pub_batch_count(b);
  const struct pub_item *it = pub_batch_items(b);
  assert(n >= 1 && n <= PUBLISH_MAX_BATCH);
  for (size_t i = 0; i < n; i++) {
    assert(it[i].ntargets >= 1 && it[i].ntargets <= PUBLISH_MAX_TARGETS);
    for (size_t k = 0; k < it[i].ntargets; k++)
      assert(strlen(it[i].targets[k]) >= 1 && strlen(it[i].targets[k]) <= CHANNEL_MAX_LEN);
    assert(it[i].handler_id >= 0 && it[i].handler_id <= 255);
    assert(!it[i].event || sse_event_name_ok(it[i].event));
    /* the frame of every accepted message can be built */
    struct frame *f = sse_frame_message("1-1", it[i].event, it[i].handler_id, it[i].json, it[i].json_len);
    assert(f);
    frame_unref(f);
  }
  pub_batch_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char field[96], msg[512];
  if (size == 0)
    return 0;
  if (data[0] & 1) {
    check(publish_parse_json((const char *)data + 1, size - 1, field, sizeof(field), msg, sizeof(msg)));
    return 0;
  }
  /* raw form: "targets\0handler\0event\0body" */
  char *copy = malloc(size + 1);
  memcpy(copy, data + 1, size - 1);
  copy[size - 1] = '\0';
  const char *parts[4] = {NULL, NULL, NULL, NULL};
  size_t np = 0, start = 0;
  for (size_t i = 0; i <= size - 1 && np < 3; i++) {
    if (i == size - 1 || copy[i] == '\0') {
      parts[np++] = copy + start;
      start = i + 1;
    }
  }
  if (np == 3 && start <= size - 1) {
    const char *body = copy + start;
    size_t blen = size - 1 - start;
    check(publish_parse_raw(parts[0], *parts[1] ? parts[1] : NULL, *parts[2] ? parts[2] : NULL,
                            body, blen, field, sizeof(field), msg, sizeof(msg)));
  }
  free(copy);
  return 0;
}
