/* Idempotency keys of single-node publishing (cluster mode keeps them in
 * Redis instead, see cluster.c): a key is remembered with a digest of what
 * was published under it and the ids it got, for a window of time, and at
 * most max_keys of them (the oldest forgotten first). Not locked: the
 * broker calls it under its ring lock, so a repeat racing the first
 * publish waits for it and then finds it. */
#ifndef TINYSSE_IDEM_H
#define TINYSSE_IDEM_H

#include <stddef.h>

#include "message.h"

#define IDEM_KEY_MAX 128     /* an Idempotency-Key: 1-128 printable characters */
#define IDEM_DIGEST_LEN 32   /* SHA-256 of the publish */

struct idem;

/* NULL when out of memory. */
struct idem *idem_new(size_t max_keys, double window);
void idem_free(struct idem *t); /* NULL is fine */

enum idem_result { IDEM_NEW, IDEM_REPEAT, IDEM_CONFLICT };
/* Looks key up at time now (seconds; keys older than the window are
 * forgotten first). IDEM_REPEAT: the same digest was published under key;
 * *first and *n say which ids it got (n consecutive positions from first).
 * IDEM_CONFLICT: key was used for a different digest. IDEM_NEW: unknown. */
enum idem_result idem_lookup(struct idem *t, const char *key, size_t keylen,
                             const unsigned char digest[IDEM_DIGEST_LEN], double now,
                             struct msgpos *first, size_t *n);
/* Remembers key (not known: call after IDEM_NEW). 0, or -1 out of memory
 * (the publish stands; only its key is not kept). */
int idem_remember(struct idem *t, const char *key, size_t keylen,
                  const unsigned char digest[IDEM_DIGEST_LEN], double now, struct msgpos first,
                  size_t n);
size_t idem_count(const struct idem *t);

/* 1 when s is a valid Idempotency-Key: 1 to IDEM_KEY_MAX bytes, each a
 * printable ASCII character (space to '~'). */
int idem_key_valid(const char *s);

#endif
