/* A worker's call-outs: the struct script_io that tinysse.http goes
 * through, on the worker's own HTTP client (httpc.c), so a hook that waits
 * for its backend never holds up the worker's loop. */
#ifndef TINYSSE_CALLOUT_IO_H
#define TINYSSE_CALLOUT_IO_H

#include <stddef.h>

#include "host.h"

struct event_base;
struct config;
struct callout_io;

/* NULL with err on failure (a CA file that cannot be read). */
struct callout_io *callout_io_new(struct event_base *base, const struct config *cfg, char *err,
                                  size_t errlen);
/* Every call still in flight is answered "shutdown" first. */
void callout_io_free(struct callout_io *io);
/* The operations for script_set_io. */
struct script_io callout_io_ops(struct callout_io *io);

#endif
