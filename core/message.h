/* A published message: its sequence number, its routing targets (kept in the
 * gateway, never sent) and its frame. Shared by reference between the replay
 * ring and every worker; immutable after message_new. */
#ifndef TINYSSE_MESSAGE_H
#define TINYSSE_MESSAGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

struct frame;

/* A message's place in the stream, the two numbers of its id "<ms>-<seq>":
 * the gateway's epoch and a counter alone, or a Redis stream id in cluster
 * mode. Ordered as the pair. */
struct msgpos {
  uint64_t ms, seq;
};
static inline int msgpos_cmp(struct msgpos a, struct msgpos b)
{
  if (a.ms != b.ms)
    return a.ms < b.ms ? -1 : 1;
  return a.seq < b.seq ? -1 : a.seq > b.seq;
}

/* A message to publish, as parsed (by POST /publish, tinysse.publish or
 * the cluster follower) and checked by validate.h; the strings belong to
 * the caller. */
struct pub_item {
  const char *const *targets;
  size_t ntargets;
  int handler_id;
  const char *event; /* NULL when none */
  const char *json;  /* the payload, valid JSON */
  size_t json_len;
};

enum message_kind {
  MESSAGE_LIVE,    /* fanned out to matching clients */
  MESSAGE_BACKLOG, /* read at a cluster node's start: replay only, never live */
  MESSAGE_GAP,     /* no frame: what came before pos is lost to this node;
                      every client gets tinysse.reset */
  MESSAGE_SUBS,    /* a subscription change (subs.h), never in history:
                      targets[0] is "u<user>" or "c<connection id>", then
                      "+<channel>" to join, "-<channel>" to leave; frame:
                      the tinysse.subscribed event, or NULL */
};

struct message {
  atomic_uint refs;
  uint32_t holds;    /* history places holding it (ring.c, under its lock) */
  uint64_t seq;      /* this process's counter: consecutive, never reused */
  struct msgpos pos; /* the public id */
  enum message_kind kind;
  double published_at; /* CLOCK_MONOTONIC seconds, for the latency histogram */
  struct frame *frame;
  uint32_t ntargets;
  const char *targets[]; /* strings stored after the array */
};

/* Takes the caller's reference to frame. refs starts at 1, kind is LIVE and
 * pos is {0, seq}. NULL on OOM. */
struct message *message_new(uint64_t seq, const char *const *targets, size_t ntargets,
                            struct frame *frame);
struct message *message_ref(struct message *m);
void message_unref(struct message *m); /* NULL is fine */

/* Ids are "<epoch>-<seq>" (the shape of Redis stream ids); the epoch is the
 * gateway's start time in ms, so ids from an earlier run are recognised. In
 * cluster mode they are the Redis stream ids themselves. */
#define MESSAGE_ID_MAX 48
void message_id_format(char out[MESSAGE_ID_MAX], uint64_t epoch, uint64_t seq);
/* 0 on success, -1 when s is not "<digits>-<digits>". */
int message_id_parse(const char *s, uint64_t *epoch, uint64_t *seq);

#endif
