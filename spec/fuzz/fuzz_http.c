/* libFuzzer target: whole HTTP requests through the real front (built
 * twice: fuzz_http sends each input as it is, HTTP/1.1; fuzz_h2, with
 * TINYSSE_FUZZ_H2, sends HTTP/2's preface first, so the input is HTTP/2
 * frames through nghttp2 and h2.c to the same handlers). One gateway
 * (one worker listening on a loopback port, with the end-to-end test script)
 * lives for the whole run; each input is written to a new loopback
 * connection, the worker's loop runs until the answers stop, the client
 * half-closes and then resets the connection, and the loop runs until the
 * gateway holds no connection and no stream again: anything left over is a
 * leak in the connection accounting and fails the run. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "client.h"
#include "front.h"
#include "h1.h"
#include "gateway.h"
#include "hub.h"
#include "log.h"
#include "ring.h"
#include "worker.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Loop passes without any answer before the client stops waiting, and the
 * most passes one input may take (a pass runs what is ready, no waiting). */
#define QUIET_PASSES 8
#define MAX_PASSES 2000

static struct config cfg;
static struct gateway gw;
static struct sockaddr_in addr;
static char listen_on[32];

/* A loopback port nobody uses now (libevent's address parser refuses port 0). */
static void pick_port(void)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(s, (struct sockaddr *)&a, &len) != 0) {
    perror("fuzz_http: a free port");
    exit(1);
  }
  close(s);
  snprintf(listen_on, sizeof(listen_on), "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
}

static void teardown(void) { gateway_teardown(&gw); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  char err[1024];
  signal(SIGPIPE, SIG_IGN);
  log_set_level((enum log_level)(LOG_ERROR + 1)); /* silent: failing hooks log a line each */
  config_defaults(&cfg);
  pick_port();
  cfg.listen[0] = listen_on;
  cfg.script = TINYSSE_FUZZ_SCRIPT;
  cfg.workers = 1;
  cfg.buffer = 64;
  /* small limits, so inputs of a few KB reach 413, 431 and libevent's own
   * limits (4x and 2x these) */
  cfg.max_header = 512;
  cfg.max_body = 1024;
  cfg.max_connections = 64;
  cfg.hook_timeout = 0.02; /* the test script's "loop" token */
  cfg.script_memory = 8L << 20;
  cfg.publish_key = "fuzz-publish-key-0123456789";

  atexit(teardown);
  if (gateway_init(&gw, &cfg, &h1_front_ops, err, sizeof(err)) != 0) {
    fprintf(stderr, "fuzz_http: %s\n", err);
    exit(1);
  }
  struct front *f = worker_front(gw.workers[0]);
  socklen_t len = sizeof(addr);
  evutil_socket_t lfd = evconnlistener_get_fd(evhttp_bound_socket_get_listener(f->bound[0]));
  if (getsockname(lfd, (struct sockaddr *)&addr, &len) != 0) {
    perror("fuzz_http: getsockname");
    exit(1);
  }
  return 0;
}

static int gateway_idle(struct worker *w)
{
  const struct clients *cs = worker_clients(w);
  return atomic_load(&gw.nconns) == 0 && !cs->clients && cs->nreap == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t input_size)
{
  struct worker *w = gw.workers[0];
#ifdef TINYSSE_FUZZ_H2
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  size_t size = sizeof(preface) - 1 + input_size;
  uint8_t *data = malloc(size);
  memcpy(data, preface, sizeof(preface) - 1);
  memcpy(data + sizeof(preface) - 1, input, input_size);
#else
  const uint8_t *data = input;
  size_t size = input_size;
#endif
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert(fd >= 0);
  if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    perror("fuzz_http: connect");
    abort();
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  /* close() sends a reset: no TIME_WAIT, so the run never runs out of ports */
  struct linger reset = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));

  size_t sent = 0;
  int quiet = 0, half_closed = 0;
  for (int pass = 0; pass < MAX_PASSES; pass++) {
    if (sent < size) {
      ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
      if (n > 0)
        sent += (size_t)n;
      else if (n < 0 && errno != EAGAIN)
        sent = size; /* the gateway closed already */
    }
    event_base_loop(worker_base(w), EVLOOP_NONBLOCK);
    char buf[4096];
    ssize_t n;
    int got = 0;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
      got = 1;
    if (n == 0 || (n < 0 && errno != EAGAIN))
      break; /* answered and closed, or reset */
    if (sent < size || got) {
      quiet = 0;
    } else if (++quiet == QUIET_PASSES) {
      if (half_closed)
        break; /* a stream: it stays open until the client goes */
      shutdown(fd, SHUT_WR);
      half_closed = 1;
      quiet = 0;
    }
  }
  close(fd);
  for (int pass = 0; pass < MAX_PASSES && !gateway_idle(w); pass++)
    event_base_loop(worker_base(w), EVLOOP_NONBLOCK);
  assert(gateway_idle(w));
#ifdef TINYSSE_FUZZ_H2
  free(data);
#endif
  return 0;
}
