/* The replay ring: the last N messages, shared by all workers. Appended under
 * its lock at publish time and read under it for replay; the per-delivery
 * path never touches it. Messages arrive in order of both their local seq
 * and their public position; the ring also knows its floor: it holds every
 * message positioned after the floor, so resuming from any id at or past the
 * floor loses nothing. Below the floor, per-channel watermarks (the newest
 * position evicted among each channel's messages) say whether a client's
 * own channels lost anything: a client on a quiet channel resumes without a
 * reset however much other channels sent. */
#ifndef TINYSSE_RING_H
#define TINYSSE_RING_H

#include <stddef.h>
#include <stdint.h>

#include "message.h"

struct ring;

/* Channels kept (watermark and history): RING_MARKS_PER_SLOT per ring slot
 * plus RING_MARKS_MIN; past that the table is cleared into one mark for
 * every channel (coarser: a client may get a reset it did not need, never
 * miss a loss). */
#define RING_MARKS_PER_SLOT 4
#define RING_MARKS_MIN 1024

/* capacity >= 1; NULL on OOM. The floor and last position start at
 * `start` (nothing published yet: resuming from `start` is fine). */
struct ring *ring_new(size_t capacity, struct msgpos start);
/* Bounds besides the count (0: none): bytes of everything held (messages
 * once, with the channels' slots), seconds since publishing, and the
 * messages each channel keeps however busy the others are (within the age
 * and byte bounds). Before the first push. */
void ring_set_limits(struct ring *r, size_t max_bytes, double max_age, size_t per_channel);

/* Why a message left the history. */
enum ring_cause { RING_BY_COUNT, RING_BY_BYTES, RING_BY_AGE, RING_BY_CHANNELS, RING_CAUSES };
struct ring_stats {
  size_t held, bytes, channels; /* distinct messages held, their bytes, channels known */
  double oldest_age;            /* seconds; 0 when nothing is held */
  unsigned long evicted[RING_CAUSES], evicted_bytes[RING_CAUSES];
  unsigned long channel_clears; /* the channel table was full and started afresh */
};
void ring_get_stats(const struct ring *r, struct ring_stats *out);
void ring_free(struct ring *r); /* drops every held reference */

void ring_lock(struct ring *r);
void ring_unlock(struct ring *r);

/* The functions below require the lock (ring_new's caller may skip it while
 * no other thread can see the ring). */
uint64_t ring_last_seq(const struct ring *r); /* 0 before the first message */
struct msgpos ring_last_pos(const struct ring *r);
struct msgpos ring_floor(const struct ring *r);
/* The oldest held message's position; 0 when the ring is empty. */
int ring_oldest_pos(const struct ring *r, struct msgpos *out);
size_t ring_count(const struct ring *r);
/* Appends m (takes new references); m->seq and m->pos must exceed the last
 * ones. Evicts the oldest entry when full (and what the other bounds say),
 * raising the floor to it. */
void ring_push(struct ring *r, struct message *m);
/* Applies the age bound now (ring_push does at each push). */
void ring_expire(struct ring *r);
/* Messages before pos are lost (a cluster node cut off too long): raises the
 * floor (and the last position) to pos. Never lowers them. */
void ring_raise_floor(struct ring *r, struct msgpos pos);

enum ring_resume { RING_RESUME_OK, RING_RESUME_TOO_OLD, RING_RESUME_UNKNOWN };
/* Can a client that has seen everything up to `seen` resume without a gap?
 * OK when floor <= seen <= last, TOO_OLD below the floor, UNKNOWN past the
 * last position. */
enum ring_resume ring_check_resume(const struct ring *r, struct msgpos seen);
/* The same for a client on these channels: also OK below the floor when
 * none of them lost a message positioned after `seen`. */
enum ring_resume ring_check_resume_channels(const struct ring *r, struct msgpos seen,
                                            const char *const *channels, size_t n);
/* The newest position lost from channel (the evicted messages sent to it,
 * and losses on every channel); the start position when none. */
struct msgpos ring_channel_mark(const struct ring *r, const char *channel);
size_t ring_marks(const struct ring *r); /* channels with a watermark of their own */
/* Did channel lose a message positioned after `after`? */
int ring_channel_lost(const struct ring *r, const char *channel, struct msgpos after);
/* Calls fn for each message of the ring positioned after `after` with
 * seq <= upto, oldest first. */
void ring_each_range(struct ring *r, struct msgpos after, uint64_t upto,
                     void (*fn)(struct message *m, void *arg), void *arg);
/* The same for a client on these channels: first what only their
 * histories still hold (each message once), then the ring's range (fn
 * filters by channel). */
void ring_each_for(struct ring *r, struct msgpos after, uint64_t upto,
                   const char *const *channels, size_t n,
                   void (*fn)(struct message *m, void *arg), void *arg);
/* Calls fn for channel's held messages positioned after `after`, oldest
 * first, at most limit; returns how many. */
size_t ring_channel_history(struct ring *r, const char *channel, struct msgpos after,
                            size_t limit, void (*fn)(struct message *m, void *arg), void *arg);

#endif
