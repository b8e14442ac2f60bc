/* The replay ring: the last N messages, shared by all workers. Appended under
 * its lock at publish time and read under it for replay; the per-delivery
 * path never touches it. Sequence numbers are consecutive (the broker
 * assigns them under this lock), which ring_check_resume relies on. */
#ifndef TINYSSE_RING_H
#define TINYSSE_RING_H

#include <stddef.h>
#include <stdint.h>

struct message;
struct ring;

struct ring *ring_new(size_t capacity); /* capacity >= 1; NULL on OOM */
void ring_free(struct ring *r);         /* drops every held reference */

void ring_lock(struct ring *r);
void ring_unlock(struct ring *r);

/* The functions below require the lock (ring_new's caller may skip it while
 * no other thread can see the ring). */
uint64_t ring_last_seq(const struct ring *r);   /* 0 before the first message */
uint64_t ring_oldest_seq(const struct ring *r); /* 0 when empty */
size_t ring_count(const struct ring *r);
/* Appends m (takes a new reference); m->seq must exceed ring_last_seq.
 * Evicts the oldest entry when full. */
void ring_push(struct ring *r, struct message *m);

enum ring_resume { RING_RESUME_OK, RING_RESUME_TOO_OLD, RING_RESUME_UNKNOWN };
/* Can a client that has seen everything up to `seen` resume without a gap? */
enum ring_resume ring_check_resume(const struct ring *r, uint64_t seen);
/* Calls fn for each held message with after < seq <= upto, oldest first. */
void ring_each_range(struct ring *r, uint64_t after, uint64_t upto,
                     void (*fn)(struct message *m, void *arg), void *arg);

#endif
