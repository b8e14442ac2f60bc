/* Unit tests for core/uring.c and the outq helpers it uses: batched sends of
 * queued frames over real loopback TCP sockets. Exits 77 (reported by ctest
 * as skipped, with the reason on stderr) where io_uring is unavailable. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "outq.h"
#include "sse.h"
#include "uring.h"

struct pair {
  int w, r; /* writer (non-blocking), reader */
};

static struct pair pair_new(void)
{
  struct pair p = {-1, -1};
  struct sockaddr_in a = {0};
  socklen_t al = sizeof(a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1) != 0 ||
      getsockname(ls, (struct sockaddr *)&a, &al) != 0)
    return p;
  p.w = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(p.w, (struct sockaddr *)&a, sizeof(a)) != 0)
    return p;
  p.r = accept(ls, NULL, NULL);
  close(ls);
  struct timeval limit = {2, 0}; /* a missing byte fails the check, never hangs it */
  setsockopt(p.r, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  fcntl(p.w, F_SETFL, fcntl(p.w, F_GETFL) | O_NONBLOCK);
  return p;
}

static void pair_close(struct pair *p)
{
  if (p->w >= 0)
    close(p->w);
  if (p->r >= 0)
    close(p->r);
  p->w = p->r = -1;
}

/* Reads n bytes into buf (fewer if none come for 2 s); returns how many. */
static size_t read_n(int fd, char *buf, size_t n)
{
  size_t got = 0;
  while (got < n) {
    ssize_t k = read(fd, buf + got, n - got);
    if (k <= 0)
      break;
    got += (size_t)k;
  }
  return got;
}

static void push(struct outq *q, const char *s)
{
  struct frame *f = frame_new(s, strlen(s));
  CHECK(f != NULL && outq_push(q, f) == 0);
  frame_unref(f); /* the queue holds its own reference */
}

/* One frame, then three (a sendmsg of several), then a head frame already
 * partly written. */
static void test_frames(struct uring *u)
{
  struct pair p = pair_new();
  CHECK(p.w >= 0 && p.r >= 0);
  struct outq q = {0};
  char buf[256];

  push(&q, "data: one\n\n");
  int slot = uring_add(u, p.w, &q);
  CHECK_EQ(slot, 0);
  CHECK(uring_run(u) == 0);
  CHECK_EQ(uring_result(u, 0), 11);
  CHECK_EQ(uring_offered(u, 0), 11);
  outq_consume(&q, 11);
  CHECK_EQ(q.n, 0);
  CHECK_EQ(q.bytes, 0);
  CHECK_MEM(buf, read_n(p.r, buf, 11), "data: one\n\n");
  uring_reset(u);

  push(&q, "a\n");
  push(&q, "bb\n");
  push(&q, "ccc\n");
  CHECK_EQ(uring_add(u, p.w, &q), 0);
  CHECK(uring_run(u) == 0);
  CHECK_EQ(uring_result(u, 0), 9);
  outq_consume(&q, 9);
  CHECK_MEM(buf, read_n(p.r, buf, 9), "a\nbb\nccc\n");
  uring_reset(u);

  push(&q, "0123456789");
  push(&q, "xyz");
  outq_consume(&q, 4); /* as after a short write */
  CHECK_EQ(q.off, 4);
  CHECK_EQ(uring_add(u, p.w, &q), 0);
  CHECK(uring_run(u) == 0);
  CHECK_EQ(uring_offered(u, 0), 9);
  CHECK_EQ(uring_result(u, 0), 9);
  outq_consume(&q, 9);
  CHECK_EQ(q.n, 0);
  CHECK_MEM(buf, read_n(p.r, buf, 9), "456789xyz");
  uring_reset(u);
  outq_clear(&q);
  pair_close(&p);
}

/* A frame larger than the socket takes: the send is cut short, the result
 * says how much went, and the rest follows from where it stopped. */
static void test_short_send(struct uring *u)
{
  struct pair p = pair_new();
  int small = 8192; /* the reader's buffer stays as it is: tiny windows on
                     * loopback stall for long */
  setsockopt(p.w, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  enum { BIG = 4 << 20 };
  char *big = malloc(BIG + 1), *back = malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    big[i] = (char)('a' + i % 26);
  big[BIG] = '\0';
  struct outq q = {0};
  push(&q, big);
  CHECK_EQ(uring_add(u, p.w, &q), 0);
  CHECK(uring_run(u) == 0);
  ssize_t r = uring_result(u, 0);
  CHECK(r > 0 && r < BIG);
  uring_reset(u);
  if (r > 0 && r < BIG) {
    outq_consume(&q, (size_t)r);
    CHECK_EQ(q.off, r);
    CHECK_EQ(q.bytes, BIG - r);
    /* read what arrived while sending the rest in further batches */
    size_t got = 0;
    time_t until = time(NULL) + 10;
    while (got < BIG && time(NULL) < until) {
      if (q.n > 0) {
        CHECK_EQ(uring_add(u, p.w, &q), 0);
        CHECK(uring_run(u) == 0);
        ssize_t k = uring_result(u, 0);
        CHECK(k > 0 || k == -EAGAIN);
        if (k > 0)
          outq_consume(&q, (size_t)k);
        uring_reset(u);
      }
      ssize_t n = recv(p.r, back + got, BIG - got, MSG_DONTWAIT);
      if (n > 0)
        got += (size_t)n;
    }
    CHECK_EQ(got, BIG);
    CHECK(memcmp(back, big, BIG) == 0);
    CHECK_EQ(q.n, 0);
  }
  outq_clear(&q);
  free(big);
  free(back);
  pair_close(&p);
}

/* More frames than one send takes: the first URING_IOV go, in order. */
static void test_many_frames(struct uring *u)
{
  struct pair p = pair_new();
  struct outq q = {0};
  char want[URING_IOV * 2 * 4 + 1] = "", buf[sizeof(want)];
  for (int i = 0; i < URING_IOV * 2; i++) {
    char s[8];
    snprintf(s, sizeof(s), "%02d;", i);
    push(&q, s);
    if (i < URING_IOV)
      strcat(want, s);
  }
  CHECK_EQ(uring_add(u, p.w, &q), 0);
  CHECK(uring_run(u) == 0);
  CHECK_EQ(uring_offered(u, 0), strlen(want));
  CHECK_EQ(uring_result(u, 0), strlen(want));
  outq_consume(&q, strlen(want));
  CHECK_EQ(q.n, URING_IOV);
  CHECK_MEM(buf, read_n(p.r, buf, strlen(want)), want);
  uring_reset(u);
  outq_clear(&q);
  pair_close(&p);
}

/* A batch over several sockets, one of them full, one closed by its peer:
 * each slot gets its own result, and the others are sent whole. */
static void test_batch(struct uring *u)
{
  enum { N = 4 };
  struct pair p[N];
  struct outq q[N];
  memset(q, 0, sizeof(q));
  for (int i = 0; i < N; i++) {
    p[i] = pair_new();
    CHECK(p[i].w >= 0 && p[i].r >= 0);
    push(&q[i], "data: x\n\n");
  }
  /* socket 1: fill it until the kernel refuses more */
  int small = 4096;
  setsockopt(p[1].w, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  setsockopt(p[1].r, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  static char fill[65536];
  long filled = 0;
  for (int k = 0; k < 10000; k++) {
    ssize_t w = write(p[1].w, fill, sizeof(fill));
    if (w < 0)
      break;
    filled += w;
  }
  CHECK(filled > 0);
  /* socket 2: the peer goes away with unread data, so the send fails */
  CHECK(write(p[2].w, "unread", 6) == 6);
  usleep(10000);
  close(p[2].r);
  p[2].r = -1;
  usleep(10000);

  for (int i = 0; i < N; i++)
    CHECK_EQ(uring_add(u, p[i].w, &q[i]), i);
  CHECK(uring_run(u) == 0);
  char buf[16];
  for (int i = 0; i < N; i += 3) { /* 0 and 3 */
    CHECK_EQ(uring_result(u, i), 9);
    CHECK_MEM(buf, read_n(p[i].r, buf, 9), "data: x\n\n");
  }
  CHECK_EQ(uring_result(u, 1), -EAGAIN);
  ssize_t r2 = uring_result(u, 2);
  CHECK(r2 == -EPIPE || r2 == -ECONNRESET);
  uring_reset(u);
  for (int i = 0; i < N; i++) {
    outq_clear(&q[i]);
    pair_close(&p[i]);
  }
}

/* The batch is reusable; more sends than its size are refused by uring_full. */
static void test_reuse(struct uring *u, unsigned max)
{
  struct pair p = pair_new();
  struct outq q = {0};
  char buf[8];
  size_t bad = 0;
  for (int round = 0; round < 2000; round++) {
    push(&q, "r\n");
    if (uring_add(u, p.w, &q) != 0 || uring_run(u) != 0 || uring_result(u, 0) != 2)
      bad++;
    outq_consume(&q, 2);
    uring_reset(u);
    if (read_n(p.r, buf, 2) != 2)
      bad++;
  }
  CHECK_EQ(bad, 0);
  push(&q, "f\n");
  for (unsigned i = 0; i < max; i++) {
    CHECK(!uring_full(u));
    CHECK_EQ(uring_add(u, p.w, &q), i);
  }
  CHECK(uring_full(u));
  CHECK(uring_run(u) == 0);
  uring_reset(u);
  CHECK(!uring_full(u));
  outq_clear(&q);
  pair_close(&p);
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  struct uring *u = uring_new(8);
  if (!u) {
    fprintf(stderr, "SKIPPED: io_uring unavailable here (%s); the gateway writes with writev\n",
            strerror(errno));
    return 77;
  }
  test_frames(u);
  test_many_frames(u);
  test_short_send(u);
  test_batch(u);
  test_reuse(u, 8);
  uring_free(u);
  return check_done();
}
