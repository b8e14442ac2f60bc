/* Server-side subscriptions: a change to live streams' channels
 * (POST /subscriptions, tinysse.subscribe), and the store of what each user
 * was subscribed to, so a reconnecting stream gets those channels back.
 *
 * The store maps a user id to the channels added for it (at most
 * STREAM_MAX_CHANNELS), forgotten --subscription-ttl seconds after the
 * user's last change; at most --subscription-users users. Thread-safe
 * (its own lock). In cluster mode every node keeps the same store, fed by
 * the subscription entries of the Redis stream, and Redis keeps it too
 * (cluster_subs.c) for nodes that start later. */
#ifndef TINYSSE_SUBS_H
#define TINYSSE_SUBS_H

#include <stddef.h>

#include "message.h"

/* One change, as parsed; the strings belong to the caller. Exactly one of
 * user and client is set. */
struct subs_change {
  const char *user;   /* every stream of this user id */
  const char *client; /* one stream, by its connection id */
  const char *const *add;
  size_t nadd;
  const char *const *del;
  size_t ndel;
  const char *data; /* JSON for the tinysse.subscribed event's "data", or NULL */
  size_t data_len;
};

struct subs;

/* The rules for a change: one of user (1 to 256 bytes, no control
 * character) and client; channel names as a stream's; at most
 * STREAM_MAX_CHANNELS in each list, at least one name in all, none in both
 * lists. NULL when fine, else msg (and the field at fault). */
const char *subs_check(const struct subs_change *c, char *field, size_t fieldlen,
                                char *msg, size_t msglen);

/* The outcome: status 200 with streams (the open streams of that user, or
 * 0/1 for a connection id, on this node) and, in cluster mode, the id of
 * the stream entry; else error and message (400 names field). */
struct subs_outcome {
  int status;
  size_t streams;
  char id[MESSAGE_ID_MAX];
  const char *error;
  char field[32];
  char message[300];
};
typedef void (*subs_done_fn)(void *arg, const struct subs_outcome *o);
#define SUBS_PENDING 0

struct subs *subs_new(size_t max_users, double ttl);
void subs_free(struct subs *s);

#define SUBS_OK 0
#define SUBS_TOO_MANY_CHANNELS (-1) /* the user would keep more than STREAM_MAX_CHANNELS */
#define SUBS_FULL (-2)              /* --subscription-users users are kept already */
#define SUBS_NOMEM (-3)
/* Records a user's change (a client change is not kept) at Unix time now:
 * SUBS_OK or an error above (nothing changed). With check_only, only says
 * whether it would fit. */
int subs_record(struct subs *s, const struct subs_change *c, double now, int check_only);
/* Replaces what a user keeps (cluster: the snapshot Redis holds), until
 * Unix time expires; n == 0 forgets the user. */
int subs_set(struct subs *s, const char *user, const char *const *channels, size_t n,
             double expires);
/* Forgets every user (before a cluster node loads Redis's copy). */
void subs_clear(struct subs *s);
/* Appends the channels kept for user (copies) to *list (of *n, malloc'd),
 * skipping those already there and stopping at max in all; returns how
 * many were added. */
size_t subs_merge(struct subs *s, const char *user, double now, char ***list, size_t *n,
                  size_t max);
/* Users and channels kept now (after dropping expired users). */
void subs_counts(struct subs *s, double now, size_t *users, size_t *channels);

/* The channel set of a stream after a change: current minus del plus add,
 * in that order, without repeats, at most max (the rest is dropped and
 * counted in *dropped). Returns a new array of copies (*out_n names), or
 * NULL on OOM; *changed says whether it differs from current. */
char **subs_apply(const char *const *current, size_t n, const struct subs_change *c, size_t max,
                  size_t *out_n, int *changed, size_t *dropped);

#endif
