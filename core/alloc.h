/* The error policy for memory: small internal allocations never fail in
 * the middle of a request or a fan-out; when malloc does fail the process
 * says so and aborts (as redis does), since no half-built state is safer
 * than a clean crash that the supervisor restarts. Only allocations sized
 * by a client (a body, a batch) are checked where they are made, and
 * become an error answer. Header-only, so lua/ uses it without linking
 * core. */
#ifndef TINYSSE_ALLOC_H
#define TINYSSE_ALLOC_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline _Noreturn void alloc_failed(size_t n)
{
  fprintf(stderr, "tinysse: out of memory (allocating %zu bytes); aborting\n", n);
  abort();
}

static inline void *xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p)
    alloc_failed(n);
  return p;
}

static inline void *xcalloc(size_t count, size_t size)
{
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p)
    alloc_failed(count * size);
  return p;
}

static inline void *xrealloc(void *old, size_t n)
{
  void *p = realloc(old, n ? n : 1);
  if (!p)
    alloc_failed(n);
  return p;
}

static inline char *xstrdup(const char *s)
{
  size_t n = strlen(s) + 1;
  return memcpy(xmalloc(n), s, n);
}

#endif
