/* A published message: its sequence number, its routing targets (kept in the
 * gateway, never sent) and its frame. Shared by reference between the replay
 * ring and every worker; immutable after message_new. */
#ifndef TINYSSE_MESSAGE_H
#define TINYSSE_MESSAGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

struct frame;

struct message {
  atomic_uint refs;
  uint64_t seq;
  double published_at; /* CLOCK_MONOTONIC seconds, for the latency histogram */
  struct frame *frame;
  uint32_t ntargets;
  const char *targets[]; /* strings stored after the array */
};

/* Takes the caller's reference to frame. refs starts at 1. NULL on OOM. */
struct message *message_new(uint64_t seq, const char *const *targets, size_t ntargets,
                            struct frame *frame);
struct message *message_ref(struct message *m);
void message_unref(struct message *m); /* NULL is fine */

/* Ids are "<epoch>-<seq>" (the shape of Redis stream ids); the epoch is the
 * gateway's start time in ms, so ids from an earlier run are recognised. */
#define MESSAGE_ID_MAX 48
void message_id_format(char out[MESSAGE_ID_MAX], uint64_t epoch, uint64_t seq);
/* 0 on success, -1 when s is not "<digits>-<digits>". */
int message_id_parse(const char *s, uint64_t *epoch, uint64_t *seq);

#endif
