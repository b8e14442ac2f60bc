/* evhttp_connection_free() shuts its socket down, so a stream keeps a
 * duplicate of the descriptor and the original number is pointed at a
 * spare unconnected socket before evhttp frees its connection, outside
 * evhttp's own callback (next loop turn). In a storm, thousands of streams
 * are handed over in one loop turn and would each hold two descriptors
 * until then; but a connection handed over by an earlier callback is no
 * longer in use by evhttp, so each hand-over frees those first. */
#define _GNU_SOURCE /* dup3 */
#include "takeover.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "alloc.h"

struct takeover {
  int spare_fd;
  struct evhttp_connection **handed; /* waiting to be freed */
  size_t n, cap;
  struct event *free_ev;
};

static void free_handed(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct takeover *t = arg;
  for (size_t i = 0; i < t->n; i++) {
    /* The number now holds a duplicate of the spare socket. libevent
     * would close it only when the bufferevent's finalizer runs, late in
     * the loop turn: close it here, so a storm does not pile them up. */
    struct bufferevent *bev = evhttp_connection_get_bufferevent(t->handed[i]);
    evutil_socket_t number = bufferevent_getfd(bev);
    bufferevent_setfd(bev, -1);
    evhttp_connection_free(t->handed[i]); /* shuts the spare down, harmlessly */
    if (number >= 0)
      close(number);
  }
  t->n = 0;
}

struct takeover *takeover_new(struct event_base *base)
{
  struct takeover *t = xcalloc(1, sizeof(*t));
  t->spare_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  t->free_ev = evtimer_new(base, free_handed, t);
  if (t->spare_fd < 0 || !t->free_ev) {
    takeover_free(t);
    return NULL;
  }
  return t;
}

void takeover_free(struct takeover *t)
{
  if (!t)
    return;
  if (t->free_ev)
    event_free(t->free_ev); /* what is still handed goes with evhttp */
  if (t->spare_fd >= 0)
    close(t->spare_fd);
  free(t->handed);
  free(t);
}

int takeover_socket(struct takeover *t, struct evhttp_request *req)
{
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
  evutil_socket_t fd = bufferevent_getfd(bev);
  free_handed(-1, 0, t);
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 16;
    t->handed = xrealloc(t->handed, t->cap * sizeof(*t->handed));
  }
  int mine = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (mine < 0)
    return -1;
  if (dup3(t->spare_fd, fd, O_CLOEXEC) < 0) {
    close(mine);
    return -1;
  }
  bufferevent_disable(bev, EV_READ | EV_WRITE);
  t->handed[t->n++] = evcon;
  static const struct timeval next_turn = {0, 0};
  event_add(t->free_ev, &next_turn);
  /* Frames are written whole and at once; Nagle would hold a small frame
   * back until the client acknowledges the previous one. */
  int one = 1;
  setsockopt(mine, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return mine;
}
