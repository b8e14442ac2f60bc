#define _GNU_SOURCE
/* floor: the CPU cost of one write() to a loopback TCP socket, the floor
 * under any SSE server's cost per delivery when it writes each delivery on
 * its own.
 *
 * A forked child drains the other end (optionally pinned to --reader-cpu);
 * the parent, optionally pinned to --writer-cpu, does --count blocking
 * write()s of each size on a TCP_NODELAY socket and reports the process CPU
 * time (CLOCK_PROCESS_CPUTIME_ID: user + system, which on loopback includes
 * the kernel's receive path run on the writer's CPU) per write.
 * Prints: FLOOR size=100 writes=200000 cpu_us_per_write=... wall_us_per_write=...
 * (one line per size).
 *
 * Then the same sends batched the way tinysse writes a fan-out: 256 sockets
 * (one reader process draining them all with epoll), each round one 100 B
 * send to every socket, once as 256 write() calls and once as one io_uring
 * submission of 256 sends (built with liburing):
 * FLOOR_BATCH sockets=256 size=100 sends=... write_cpu_us_per_send=...
 *   uring_cpu_us_per_send=... */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef TINYSSE_HAVE_URING
#include <liburing.h>
#endif

static double ts(clockid_t id)
{
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void pin(int cpu)
{
  if (cpu < 0)
    return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0)
    perror("floor: sched_setaffinity");
}

static int run(size_t size, long count, int wcpu, int rcpu)
{
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {0};
  socklen_t al = sizeof(a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1) != 0 ||
      getsockname(ls, (struct sockaddr *)&a, &al) != 0) {
    perror("floor: listen");
    return 1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    pin(rcpu);
    int s = accept(ls, NULL, NULL);
    static char buf[1 << 16];
    while (read(s, buf, sizeof(buf)) > 0) {
    }
    _exit(0);
  }
  close(ls);
  pin(wcpu);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
    perror("floor: connect");
    return 1;
  }
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  char *msg = malloc(size);
  memset(msg, 'x', size);
  /* warm up */
  for (long i = 0; i < count / 10; i++)
    if (write(s, msg, size) != (ssize_t)size)
      return 1;
  double c0 = ts(CLOCK_PROCESS_CPUTIME_ID), w0 = ts(CLOCK_MONOTONIC);
  for (long i = 0; i < count; i++)
    if (write(s, msg, size) != (ssize_t)size) {
      perror("floor: write");
      return 1;
    }
  double c1 = ts(CLOCK_PROCESS_CPUTIME_ID), w1 = ts(CLOCK_MONOTONIC);
  close(s);
  waitpid(pid, NULL, 0);
  free(msg);
  printf("FLOOR size=%zu writes=%ld cpu_us_per_write=%.2f wall_us_per_write=%.2f\n", size, count,
         (c1 - c0) * 1e6 / (double)count, (w1 - w0) * 1e6 / (double)count);
  fflush(stdout);
  return 0;
}

#define BATCH 256

/* One round: a send of msg to each socket, by write() or through the ring. */
static int round_of_sends(int *fds, const char *msg, size_t size, void *ring)
{
#ifdef TINYSSE_HAVE_URING
  if (ring) {
    struct io_uring *r = ring;
    for (int i = 0; i < BATCH; i++) {
      struct io_uring_sqe *sqe = io_uring_get_sqe(r);
      if (!sqe)
        return -1;
      io_uring_prep_send(sqe, fds[i], msg, size, MSG_NOSIGNAL);
    }
    if (io_uring_submit_and_wait(r, BATCH) < 0)
      return -1;
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    int bad = 0;
    io_uring_for_each_cqe(r, head, cqe)
    {
      seen++;
      bad |= cqe->res != (int)size;
    }
    io_uring_cq_advance(r, seen);
    return bad || seen != BATCH ? -1 : 0;
  }
#endif
  (void)ring;
  for (int i = 0; i < BATCH; i++)
    if (write(fds[i], msg, size) != (ssize_t)size)
      return -1;
  return 0;
}

static int run_batch(size_t size, long count, int wcpu, int rcpu)
{
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1, fds[BATCH];
  struct sockaddr_in a = {0};
  socklen_t al = sizeof(a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, BATCH) != 0 ||
      getsockname(ls, (struct sockaddr *)&a, &al) != 0) {
    perror("floor: listen");
    return 1;
  }
  for (int i = 0; i < BATCH; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof(a)) != 0) {
      perror("floor: connect");
      return 1;
    }
    setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  pid_t pid = fork();
  if (pid == 0) {
    pin(rcpu);
    for (int i = 0; i < BATCH; i++)
      close(fds[i]);
    int ep = epoll_create1(0);
    for (int i = 0; i < BATCH; i++) {
      int s = accept(ls, NULL, NULL);
      struct epoll_event e = {.events = EPOLLIN, .data.fd = s};
      if (s < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, s, &e) != 0)
        _exit(1);
    }
    static char buf[1 << 16];
    struct epoll_event ev[BATCH];
    for (int open = BATCH; open > 0;) {
      int n = epoll_wait(ep, ev, BATCH, -1);
      for (int i = 0; i < n; i++)
        if (read(ev[i].data.fd, buf, sizeof(buf)) <= 0) {
          close(ev[i].data.fd);
          open--;
        }
    }
    _exit(0);
  }
  close(ls);
  pin(wcpu);
  char *msg = malloc(size);
  memset(msg, 'x', size);
  long rounds = count / BATCH;
  double cost[2] = {-1, -1};
  for (int mode = 0; mode < 2; mode++) {
    void *ring = NULL;
#ifdef TINYSSE_HAVE_URING
    static struct io_uring r;
    if (mode == 1) {
      if (io_uring_queue_init(BATCH, &r, 0) != 0)
        break;
      ring = &r;
    }
#else
    if (mode == 1)
      break;
#endif
    for (long i = 0; i < rounds / 10; i++) /* warm up */
      if (round_of_sends(fds, msg, size, ring) != 0)
        return 1;
    double c0 = ts(CLOCK_PROCESS_CPUTIME_ID);
    for (long i = 0; i < rounds; i++)
      if (round_of_sends(fds, msg, size, ring) != 0) {
        perror("floor: send");
        return 1;
      }
    cost[mode] = (ts(CLOCK_PROCESS_CPUTIME_ID) - c0) * 1e6 / (double)(rounds * BATCH);
#ifdef TINYSSE_HAVE_URING
    if (ring)
      io_uring_queue_exit(ring);
#endif
  }
  for (int i = 0; i < BATCH; i++)
    close(fds[i]);
  waitpid(pid, NULL, 0);
  free(msg);
  printf("FLOOR_BATCH sockets=%d size=%zu sends=%ld write_cpu_us_per_send=%.2f ", BATCH, size,
         rounds * BATCH, cost[0]);
  if (cost[1] < 0)
    printf("uring_cpu_us_per_send=n/a\n");
  else
    printf("uring_cpu_us_per_send=%.2f\n", cost[1]);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv)
{
  long count = 200000;
  int wcpu = -1, rcpu = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--count"))
      count = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--writer-cpu"))
      wcpu = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reader-cpu"))
      rcpu = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: %s [--count N] [--writer-cpu C] [--reader-cpu C]\n", argv[0]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  return run(100, count, wcpu, rcpu) || run(10240, count, wcpu, rcpu) ||
         run_batch(100, count, wcpu, rcpu);
}
