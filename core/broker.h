/* The broker assigns ids, puts messages in the replay ring and hands them to
 * every worker, all under the ring lock, so every worker sees the same order
 * and a message is in the ring before its publish is acknowledged. */
#ifndef TINYSSE_BROKER_H
#define TINYSSE_BROKER_H

#include <stddef.h>

#include "shared.h"
#include "idem.h"
#include "message.h"


/* Publishes n items in order; writes each id to ids[i]. Returns the number
 * published (n unless memory ran out). */
size_t broker_publish(struct gateway *gw, const struct pub_item *items, size_t n,
                      char (*ids)[MESSAGE_ID_MAX]);

/* Single node, with an Idempotency-Key (scope and key): looks the key up
 * and publishes, atomically. IDEM_NEW: published as broker_publish does
 * (*done of n). IDEM_REPEAT: the key was used for the same digest within
 * the window: nothing is published and ids get that publish's ids.
 * IDEM_CONFLICT: used for a different digest; nothing happens. */
enum idem_result broker_publish_once(struct gateway *gw, const struct pub_item *items, size_t n,
                                     const char *key, size_t keylen,
                                     const unsigned char digest[IDEM_DIGEST_LEN],
                                     char (*ids)[MESSAGE_ID_MAX], size_t *done);
/* What an Idempotency-Key guards: SHA-256 over the messages as parsed
 * (targets, handler id, event, payload) and whether they came as an
 * array, so the same publish written differently is still a repeat. */
void broker_digest(const struct pub_item *items, size_t n, int is_array,
                   unsigned char out[IDEM_DIGEST_LEN]);

/* Cluster mode: n messages read from Redis, in stream order, at the given
 * positions (their ids). Those not past the ring's last position are skipped
 * (already here). kind is MESSAGE_LIVE, or MESSAGE_BACKLOG for what a node
 * reads at start (kept for replay, never fanned out). Returns how many were
 * added. */
size_t broker_ingest(struct gateway *gw, const struct msgpos *pos, const struct pub_item *items,
                     size_t n, enum message_kind kind);
/* Cluster mode: nothing before `floor` can be replayed by this node (at
 * start: Redis trimmed it; later: the node was cut off longer than Redis
 * keeps messages). Raises the ring's floor; with reset_clients every worker
 * sends its clients tinysse.reset (reason "gap"). 0, or -1 out of memory. */
int broker_set_floor(struct gateway *gw, struct msgpos floor, int reset_clients);

/* A subscription change (subs.h), in order with publishes: with record,
 * kept in the store first (single node; the cluster follower), then handed
 * to every worker, which changes its matching streams. SUBS_OK, or a
 * SUBS_* error when the store refused it (then nothing happened). */
struct subs_change;
int broker_subscribe(struct gateway *gw, const struct subs_change *c, int record);

#endif
