/* The channel index of one worker: channel -> subscribers, so a message
 * visits only the clients of its target channels. Single-threaded: each
 * worker owns its hub. Subscribers are opaque owners (clients) here. */
#ifndef TINYSSE_HUB_H
#define TINYSSE_HUB_H

#include <stddef.h>
#include <stdint.h>

struct hub;
struct hub_sub;
struct message;

/* The string hash the gateway's tables use (FNV-1a). */
uint64_t hub_hash(const char *s);

struct hub *hub_new(void);
void hub_free(struct hub *h); /* subscriptions must be gone already */

/* Subscribes owner to channels (duplicates are ignored). Returns the
 * subscription handle, NULL on OOM or when n is 0. */
struct hub_sub *hub_subscribe(struct hub *h, void *owner, const char *const *channels, size_t n);
void hub_unsubscribe(struct hub *h, struct hub_sub *s); /* NULL is fine */

/* Calls deliver(owner, m, arg) once for each subscriber of any of m's
 * targets, even when several of its channels are targeted. m->seq must be
 * non-zero and each message routed once (the seq stamps subscribers to skip
 * repeats). deliver must not subscribe or unsubscribe. Returns the number of
 * deliver calls. */
size_t hub_route(struct hub *h, const struct message *m,
                 void (*deliver)(void *owner, const struct message *m, void *arg), void *arg);
/* True when one of s's channels is among m's targets. */
int hub_sub_matches(const struct hub_sub *s, const struct message *m);

size_t hub_channel_count(const struct hub *h);             /* channels with subscribers */
size_t hub_subscribers(const struct hub *h, const char *ch); /* 0 for unknown */
size_t hub_sub_channels(const struct hub_sub *s, const char **out, size_t cap);
/* Calls fn for each channel with its subscriber count. */
void hub_each_channel(const struct hub *h, void (*fn)(const char *ch, size_t n, void *arg), void *arg);

#endif
