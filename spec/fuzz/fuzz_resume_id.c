/* libFuzzer target: resume ids (Last-Event-ID / ?lastEventId=) against a
 * ring: parsing never crashes, and a parsed id round-trips. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "ring.h"
#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ring *ring;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!ring) {
    ring = ring_new(16, (struct msgpos){0, 0});
    for (uint64_t seq = 1; seq <= 40; seq++) {
      const char *t = "all";
      struct message *m = message_new(seq, &t, 1, frame_new("x", 1));
      ring_push(ring, m);
      message_unref(m);
    }
  }
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0';
  uint64_t epoch, seq;
  if (message_id_parse(s, &epoch, &seq) == 0) {
    char back[MESSAGE_ID_MAX];
    message_id_format(back, epoch, seq);
    uint64_t e2, s2;
    assert(message_id_parse(back, &e2, &s2) == 0 && e2 == epoch && s2 == seq);
    enum ring_resume r = ring_check_resume(ring, (struct msgpos){epoch, seq});
    assert(r == RING_RESUME_OK || r == RING_RESUME_TOO_OLD || r == RING_RESUME_UNKNOWN);
    if (r == RING_RESUME_OK)
      assert(epoch == 0 && seq >= 24 && seq <= 40); /* the ring holds 0-25..0-40 */
  }
  free(s);
  return 0;
}
