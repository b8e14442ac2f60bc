/* The HTTP/1.1 transport (evhttp): what a worker serves with. */
#ifndef TINYSSE_H1_H
#define TINYSSE_H1_H

struct worker_front_ops;

/* The worker operations of the HTTP/1.1 front: open binds --listen on the
 * worker's loop, tick drives the status page's stream. */
extern const struct worker_front_ops h1_front_ops;

#endif
