/* Published messages and their ids. */
#include "message.h"
#include "sse.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct message *message_new(uint64_t seq, const char *const *targets, size_t ntargets,
                            struct frame *frame)
{
  size_t strbytes = 0;
  for (size_t i = 0; i < ntargets; i++)
    strbytes += strlen(targets[i]) + 1;
  struct message *m = malloc(sizeof(*m) + ntargets * sizeof(char *) + strbytes);
  if (!m)
    return NULL;
  atomic_init(&m->refs, 1);
  m->holds = 0;
  m->seq = seq;
  m->pos = (struct msgpos){0, seq};
  m->kind = MESSAGE_LIVE;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  m->published_at = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  m->frame = frame;
  m->ntargets = (uint32_t)ntargets;
  char *p = (char *)(m->targets + ntargets);
  for (size_t i = 0; i < ntargets; i++) {
    size_t n = strlen(targets[i]) + 1;
    memcpy(p, targets[i], n);
    m->targets[i] = p;
    p += n;
  }
  return m;
}

struct message *message_ref(struct message *m)
{
  atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
  return m;
}

void message_unref(struct message *m)
{
  if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
    frame_unref(m->frame);
    free(m);
  }
}

void message_id_format(char out[MESSAGE_ID_MAX], uint64_t epoch, uint64_t seq)
{
  snprintf(out, MESSAGE_ID_MAX, "%" PRIu64 "-%" PRIu64, epoch, seq);
}

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
  uint64_t v = 0;
  if (n == 0 || n > 20)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int message_id_parse(const char *s, uint64_t *epoch, uint64_t *seq)
{
  const char *dash = s ? strchr(s, '-') : NULL;
  if (!dash)
    return -1;
  if (parse_u64(s, (size_t)(dash - s), epoch) != 0)
    return -1;
  return parse_u64(dash + 1, strlen(dash + 1), seq);
}
