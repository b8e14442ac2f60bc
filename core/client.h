/* A stream client: an accepted GET on the stream endpoint whose connection
 * the gateway takes over from evhttp (raw status line and headers, then SSE
 * frames; no chunked encoding, no evhttp timeouts). */
#ifndef TINYSSE_CLIENT_H
#define TINYSSE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct worker;
struct message;
struct evhttp_request;
struct client;

struct client_params {
  char *user_id, *role;   /* ownership passes to the client */
  char **channels;        /* ownership passes to the client */
  size_t nchannels;
  double expires_at;      /* Unix seconds; 0 = never */
  const char *resume_id;  /* Last-Event-ID or ?lastEventId=, NULL when none */
  const char *extra_headers; /* CORS lines ("Name: value\r\n"...), may be "" */
  const char *peer_ip;       /* for --max-clients-per-peer */
  int internal;              /* the status page's stream: no hooks, no presence */
};

/* Opens the stream on req's connection. 0 on success (the client now owns
 * the connection and p's strings); -1 out of memory, -2 too many clients,
 * -3 too many from this peer, -4 out of descriptors: then nothing was taken
 * and the caller answers req. */
int client_open(struct worker *w, struct evhttp_request *req, struct client_params *p);
/* Queues m's frame unless the client already has it (replay seam). */
void client_deliver(struct client *c, const struct message *m);
/* Writes the queued output of up to max clients from the worker's FIFO of
 * clients with new output (one writev each), closing as `slow` those whose
 * unwritten queue then passes --max-queue. Returns whether clients remain.
 * The worker calls it in slices, so publishes are read between slices and
 * pile up into bigger writes rather than longer queues. */
int client_flush_some(struct worker *w, int max);
/* Sends tinysse.reset (reason "too_old", "unknown" or "gap"): the client
 * cannot be given what it missed and should refetch its state. */
void client_reset(struct client *c, const char *reason);
/* Flushes c now, out of turn (a new stream's headers and replay). */
void client_flush_one(struct client *c);
/* Stops deliveries and queues the client for freeing after the current pass. */
void client_close(struct client *c, const char *reason);
/* Sends a frame, then closes once it is written (or after a few seconds). */
void client_close_after(struct client *c, const char *event, const char *json, const char *reason);
/* Frees a client queued by client_close: hooks, hub, connection. */
void client_free(struct client *c);
/* Sends `: ping` when nothing was written for `interval` seconds; returns
 * the bytes queued for the client. */
size_t client_tick(struct client *c, double now, double interval);
struct client *client_next(struct client *c);

#endif
