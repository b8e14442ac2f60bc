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
 * (one line per size). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
  return run(100, count, wcpu, rcpu) || run(10240, count, wcpu, rcpu);
}
