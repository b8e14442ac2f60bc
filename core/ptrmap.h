/* A map from pointers to pointers: open addressing with linear probing,
 * at most half full. Embedded by its owner (zero it to start); not
 * thread-safe. */
#ifndef TINYSSE_PTRMAP_H
#define TINYSSE_PTRMAP_H

#include <stddef.h>

struct ptrmap_slot {
  const void *key; /* NULL: empty */
  void *value;
};

struct ptrmap {
  struct ptrmap_slot *slots;
  size_t cap, n;
};

/* Adds key (not NULL, not present). 0, or -1 out of memory. */
int ptrmap_put(struct ptrmap *m, const void *key, void *value);
/* The value of key, or NULL. */
void *ptrmap_get(const struct ptrmap *m, const void *key);
/* Removes key if present. */
void ptrmap_del(struct ptrmap *m, const void *key);
/* Frees the slots (the map is empty after). */
void ptrmap_clear(struct ptrmap *m);

#endif
