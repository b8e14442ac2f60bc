/* Pointer map (see ptrmap.h). */
#include "ptrmap.h"

#include <stdint.h>
#include <stdlib.h>

static size_t slot_of(const struct ptrmap *m, const void *key)
{
  uint64_t h = (uint64_t)(uintptr_t)key;
  h ^= h >> 29;
  h *= 0x9e3779b97f4a7c15ULL;
  return (size_t)(h >> 20) & (m->cap - 1);
}

static void place(struct ptrmap *m, struct ptrmap_slot s)
{
  size_t i = slot_of(m, s.key);
  while (m->slots[i].key)
    i = (i + 1) & (m->cap - 1);
  m->slots[i] = s;
}

int ptrmap_put(struct ptrmap *m, const void *key, void *value)
{
  if ((m->n + 1) * 2 > m->cap) {
    size_t old_cap = m->cap, cap = old_cap ? old_cap * 2 : 64;
    struct ptrmap_slot *old = m->slots, *slots = calloc(cap, sizeof(*slots));
    if (!slots)
      return -1;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
      if (old[i].key)
        place(m, old[i]);
    free(old);
  }
  place(m, (struct ptrmap_slot){key, value});
  m->n++;
  return 0;
}

void *ptrmap_get(const struct ptrmap *m, const void *key)
{
  if (!m->cap || !key)
    return NULL;
  for (size_t i = slot_of(m, key); m->slots[i].key; i = (i + 1) & (m->cap - 1))
    if (m->slots[i].key == key)
      return m->slots[i].value;
  return NULL;
}

void ptrmap_del(struct ptrmap *m, const void *key)
{
  if (!m->cap || !key)
    return;
  size_t mask = m->cap - 1, i = slot_of(m, key);
  while (m->slots[i].key && m->slots[i].key != key)
    i = (i + 1) & mask;
  if (!m->slots[i].key)
    return;
  m->slots[i].key = NULL;
  m->n--;
  /* Put back the rest of the run, so no lookup stops early at the hole. */
  for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
    struct ptrmap_slot s = m->slots[j];
    m->slots[j].key = NULL;
    place(m, s);
  }
}

void ptrmap_clear(struct ptrmap *m)
{
  free(m->slots);
  m->slots = NULL;
  m->cap = m->n = 0;
}
