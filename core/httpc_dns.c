/* Host names for the HTTP client (see httpc_impl.h), resolved with evdns
 * so the loop never blocks: /etc/hosts and /etc/resolv.conf are read once
 * per client, each new connection to a name asks again (evdns keeps no
 * cache; kept-alive connections make that rare). The client owns its
 * lookups rather than letting the bufferevent resolve, because a lookup
 * cancelled by evdns still completes later from the loop: the evdns base
 * must outlive it, even past httpc_free. */
#include "httpc_impl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

#include <event2/dns.h>
#include <event2/util.h>

#include "alloc.h"

struct httpc_dns {
  struct evdns_base *evdns;
  unsigned long pending; /* lookups evdns has not called back yet */
  int orphaned;          /* the client is gone: the last lookup frees this */
};

struct httpc_lookup {
  struct httpc_dns *dns;
  struct httpc_conn *conn; /* NULL once cancelled */
  struct evdns_getaddrinfo_request *req;
};

static void dns_free(struct httpc_dns *d)
{
  evdns_base_free(d->evdns, 0);
  free(d);
}

static void on_resolved(int result, struct evutil_addrinfo *ai, void *arg)
{
  struct httpc_lookup *l = arg;
  struct httpc_dns *d = l->dns;
  struct httpc_conn *conn = l->conn;
  d->pending--;
  free(l);
  if (conn)
    conn->lookup = NULL;
  if (conn && result == 0) {
    /* IPv4 first: no address-family fallback is tried after a failure */
    struct evutil_addrinfo *pick = ai;
    for (struct evutil_addrinfo *a = ai; a; a = a->ai_next)
      if (a->ai_family == AF_INET) {
        pick = a;
        break;
      }
    char addr[INET6_ADDRSTRLEN] = "";
    const void *sa = pick->ai_family == AF_INET
                         ? (const void *)&((struct sockaddr_in *)pick->ai_addr)->sin_addr
                         : (const void *)&((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr;
    inet_ntop(pick->ai_family, sa, addr, sizeof(addr));
    httpc_conn_resolved(conn, addr, NULL);
  } else if (conn) {
    httpc_conn_resolved(conn, NULL, evutil_gai_strerror(result));
  }
  if (ai)
    evutil_freeaddrinfo(ai);
  if (d->orphaned && !d->pending)
    dns_free(d);
}

void httpc_dns_resolve(struct httpc_conn *conn, const char *host)
{
  struct httpc *c = conn->c;
  if (!c->dns) {
    c->dns = xcalloc(1, sizeof(*c->dns));
    /* inactive, it holds no event that keeps the loop alive */
    c->dns->evdns = evdns_base_new(c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                                EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!c->dns->evdns)
      alloc_failed(sizeof(struct evdns_base *));
  }
  struct httpc_lookup *l = xcalloc(1, sizeof(*l));
  l->dns = c->dns;
  l->conn = conn;
  conn->lookup = l;
  c->dns->pending++;
  struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                  .ai_protocol = IPPROTO_TCP, .ai_flags = EVUTIL_AI_ADDRCONFIG};
  /* /etc/hosts answers at once (l is freed then and NULL comes back) */
  struct evdns_getaddrinfo_request *req =
      evdns_getaddrinfo(c->dns->evdns, host, NULL, &hints, on_resolved, l);
  if (req && conn->lookup == l)
    l->req = req;
}

void httpc_dns_cancel(struct httpc_conn *conn)
{
  struct httpc_lookup *l = conn->lookup;
  if (!l)
    return;
  conn->lookup = NULL;
  l->conn = NULL;
  if (l->req)
    evdns_getaddrinfo_cancel(l->req); /* on_resolved still comes, later */
}

void httpc_dns_release(struct httpc *c)
{
  struct httpc_dns *d = c->dns;
  c->dns = NULL;
  if (!d)
    return;
  if (d->pending)
    d->orphaned = 1; /* if the loop never runs again, this stays allocated */
  else
    dns_free(d);
}
