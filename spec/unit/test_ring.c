/* Unit tests for core/ring.c: eviction and references, resume decisions,
 * range walks, and a randomised comparison with a naive model. */
#include "check.h"
#include "message.h"
#include "ring.h"

#define REFS(x) atomic_load(&(x)->refs)

/* message_new positions a message at {0, seq}. */
static struct message *msg(uint64_t seq) { return message_new(seq, NULL, 0, NULL); }
static struct msgpos P(uint64_t seq) { return (struct msgpos){0, seq}; }
static struct ring *mkring(size_t cap) { return ring_new(cap, P(0)); }
static uint64_t oldest_seq(const struct ring *r)
{
  struct msgpos p;
  return ring_oldest_pos(r, &p) ? p.seq : 0;
}
static enum ring_resume check_resume(const struct ring *r, uint64_t seen)
{
  return ring_check_resume(r, P(seen));
}

/* Collects the seqs ring_each_range visits. */
struct seen {
  size_t n;
  uint64_t seq[256];
};

static void collect(struct message *m, void *arg)
{
  struct seen *s = arg;
  if (s->n < 256)
    s->seq[s->n] = m->seq;
  s->n++;
}

static struct seen range(struct ring *r, uint64_t after, uint64_t upto)
{
  struct seen s = {0};
  ring_each_range(r, P(after), upto, collect, &s);
  return s;
}

/* The range holds exactly first..last (first > last: empty). */
static int range_is(struct ring *r, uint64_t after, uint64_t upto, uint64_t first, uint64_t last)
{
  struct seen s = range(r, after, upto);
  size_t want = first <= last ? (size_t)(last - first + 1) : 0;
  if (s.n != want)
    return 0;
  for (size_t i = 0; i < s.n; i++)
    if (s.seq[i] != first + i)
      return 0;
  return 1;
}

static void test_eviction(void)
{
  CHECK(ring_new(0, P(0)) == NULL);
  ring_free(NULL);

  struct ring *r = mkring(3);
  struct message *m[6];
  CHECK(r != NULL);
  CHECK_EQ(ring_count(r), 0);
  CHECK_EQ(ring_last_seq(r), 0);
  CHECK_EQ(oldest_seq(r), 0);
  for (uint64_t i = 1; i <= 5; i++) {
    m[i] = msg(i);
    ring_lock(r);
    ring_push(r, m[i]);
    ring_unlock(r);
    CHECK_EQ(REFS(m[i]), 2);
    CHECK_EQ(ring_last_seq(r), i);
  }
  CHECK_EQ(ring_count(r), 3);
  CHECK_EQ(oldest_seq(r), 3);
  CHECK_EQ(REFS(m[1]), 1); /* evicted: the ring let go */
  CHECK_EQ(REFS(m[2]), 1);
  CHECK_EQ(REFS(m[3]), 2);
  CHECK_EQ(REFS(m[5]), 2);
  ring_free(r);
  for (int i = 1; i <= 5; i++) {
    CHECK_EQ(REFS(m[i]), 1);
    message_unref(m[i]);
  }

  /* The ring's reference keeps a message alive after its creator drops it. */
  r = mkring(2);
  struct message *x = msg(1);
  ring_push(r, x);
  message_unref(x);
  CHECK_EQ(REFS(x), 1);
  CHECK(range_is(r, 0, 1, 1, 1));
  struct message *y = msg(2);
  ring_push(r, y);
  message_unref(y);
  CHECK(range_is(r, 0, 2, 1, 2));
  ring_free(r); /* ASan reports a leak unless this drops both */
}

static void test_resume(void)
{
  struct ring *r = mkring(5);
  CHECK_EQ(check_resume(r, 0), RING_RESUME_OK); /* nothing published yet */
  CHECK_EQ(check_resume(r, 1), RING_RESUME_UNKNOWN);
  for (uint64_t i = 1; i <= 8; i++) { /* holds 4..8 */
    struct message *m = msg(i);
    ring_push(r, m);
    message_unref(m);
  }
  CHECK_EQ(oldest_seq(r), 4);
  CHECK_EQ(check_resume(r, 8), RING_RESUME_OK);
  CHECK_EQ(check_resume(r, 7), RING_RESUME_OK);
  CHECK_EQ(check_resume(r, 4), RING_RESUME_OK);
  CHECK_EQ(check_resume(r, 3), RING_RESUME_OK); /* 4 is the next one: held */
  CHECK_EQ(check_resume(r, 2), RING_RESUME_TOO_OLD);
  CHECK_EQ(check_resume(r, 0), RING_RESUME_TOO_OLD);
  CHECK_EQ(check_resume(r, 9), RING_RESUME_UNKNOWN);
  CHECK_EQ(check_resume(r, UINT64_MAX), RING_RESUME_UNKNOWN);
  ring_free(r);
}

static void test_range(void)
{
  struct ring *r = mkring(5);
  CHECK(range_is(r, 0, UINT64_MAX, 1, 0)); /* empty ring */
  for (uint64_t i = 1; i <= 8; i++) { /* holds 4..8 */
    struct message *m = msg(i);
    ring_push(r, m);
    message_unref(m);
  }
  CHECK(range_is(r, 0, UINT64_MAX, 4, 8));
  CHECK(range_is(r, 3, 8, 4, 8));
  CHECK(range_is(r, 4, 8, 5, 8));   /* after is exclusive */
  CHECK(range_is(r, 4, 7, 5, 7));   /* upto is inclusive */
  CHECK(range_is(r, 5, 6, 6, 6));
  CHECK(range_is(r, 5, 5, 1, 0));
  CHECK(range_is(r, 7, 3, 1, 0));   /* after > upto */
  CHECK(range_is(r, 8, 100, 1, 0));
  CHECK(range_is(r, 0, 3, 1, 0));   /* entirely before the window */
  CHECK(range_is(r, 0, 4, 4, 4));
  CHECK(range_is(r, 7, UINT64_MAX, 8, 8));
  CHECK(range_is(r, UINT64_MAX, UINT64_MAX, 1, 0));
  ring_free(r);

  /* Capacity 1: always the newest message only. */
  r = mkring(1);
  for (uint64_t i = 1; i <= 3; i++) {
    struct message *m = msg(i);
    ring_push(r, m);
    CHECK_EQ(REFS(m), 2);
    message_unref(m);
    CHECK_EQ(ring_count(r), 1);
    CHECK_EQ(oldest_seq(r), i);
    CHECK_EQ(ring_last_seq(r), i);
    CHECK(range_is(r, 0, UINT64_MAX, i, i));
    CHECK(range_is(r, i, UINT64_MAX, 1, 0));
    CHECK(range_is(r, 0, i - 1, 1, 0));
    CHECK_EQ(check_resume(r, i), RING_RESUME_OK);
    CHECK_EQ(check_resume(r, i - 1), RING_RESUME_OK);
    if (i >= 2)
      CHECK_EQ(check_resume(r, i - 2), RING_RESUME_TOO_OLD);
  }
  ring_free(r);
}

/* Random capacities, pushes and ranges against an array of every message
 * pushed; seqs are contiguous in half of the rounds and gapped in the rest. */
static void test_model(void)
{
  for (int round = 0; round < 500; round++) {
    size_t cap = (size_t)rnd_range(1, 50);
    size_t pushes = (size_t)rnd_range(0, 150);
    int gaps = (int)(rnd() % 2);
    struct ring *r = mkring(cap);
    struct message *all[150];
    uint64_t seq = 0;
    size_t bad = 0;

    for (size_t i = 0; i < pushes; i++) {
      seq += gaps ? rnd_range(1, 4) : 1;
      all[i] = msg(seq);
      ring_push(r, all[i]);
    }
    size_t held = pushes < cap ? pushes : cap;
    size_t first = pushes - held; /* index of the oldest held message */
    CHECK_EQ(ring_count(r), held);
    CHECK_EQ(ring_last_seq(r), pushes ? all[pushes - 1]->seq : 0);
    CHECK_EQ(oldest_seq(r), held ? all[first]->seq : 0);
    for (size_t i = 0; i < pushes; i++)
      bad += REFS(all[i]) != (i >= first ? 2u : 1u);

    for (int q = 0; q < 40; q++) {
      uint64_t after = rnd_range(0, seq + 3), upto = rnd_range(0, seq + 3);
      if (q == 0)
        upto = UINT64_MAX;
      struct seen got = range(r, after, upto);
      size_t n = 0;
      for (size_t i = first; i < pushes; i++)
        if (all[i]->seq > after && all[i]->seq <= upto) {
          if (n >= got.n || n >= 256 || got.seq[n] != all[i]->seq)
            bad++;
          n++;
        }
      bad += n != got.n;

      /* Resume is OK when every message after `seen` is still held (the
       * ring's floor is the newest evicted message). */
      uint64_t seen = rnd_range(0, seq + 2);
      enum ring_resume want;
      if (seen > seq)
        want = RING_RESUME_UNKNOWN;
      else {
        int all_held = 1;
        for (size_t i = 0; i < first; i++)
          all_held &= all[i]->seq <= seen;
        want = all_held ? RING_RESUME_OK : RING_RESUME_TOO_OLD;
      }
      bad += check_resume(r, seen) != want;
    }
    if (bad)
      fprintf(stderr, "round %d: cap %zu pushes %zu gaps %d\n", round, cap, pushes, gaps);
    CHECK_EQ(bad, 0);

    ring_free(r);
    bad = 0;
    for (size_t i = 0; i < pushes; i++) {
      bad += REFS(all[i]) != 1;
      message_unref(all[i]);
    }
    CHECK_EQ(bad, 0);
  }
}

/* Cluster positions: the millisecond part moves and the counter restarts;
 * a node cut off too long raises its floor past what it lost. */
static void test_positions(void)
{
  struct ring *r = ring_new(3, (struct msgpos){0, 0});
  struct msgpos pos[5] = {{100, 0}, {100, 1}, {105, 0}, {107, 3}, {2000, 0}};
  for (int i = 0; i < 5; i++) {
    struct message *m = msg((uint64_t)i + 1);
    m->pos = pos[i];
    ring_push(r, m);
    message_unref(m);
  }
  /* holds 105-0, 107-3, 2000-0; 100-1 was evicted: the floor */
  CHECK_EQ(ring_floor(r).ms, 100);
  CHECK_EQ(ring_floor(r).seq, 1);
  CHECK_EQ(ring_check_resume(r, (struct msgpos){100, 1}), RING_RESUME_OK);
  CHECK_EQ(ring_check_resume(r, (struct msgpos){100, 0}), RING_RESUME_TOO_OLD);
  CHECK_EQ(ring_check_resume(r, (struct msgpos){106, 99}), RING_RESUME_OK);
  CHECK_EQ(ring_check_resume(r, (struct msgpos){2000, 0}), RING_RESUME_OK);
  CHECK_EQ(ring_check_resume(r, (struct msgpos){2000, 1}), RING_RESUME_UNKNOWN);
  struct seen s = {0};
  ring_each_range(r, (struct msgpos){106, 99}, UINT64_MAX, collect, &s);
  CHECK_EQ(s.n, 2);
  CHECK_EQ(s.seq[0], 4);
  CHECK_EQ(s.seq[1], 5);
  s.n = 0;
  ring_each_range(r, (struct msgpos){100, 1}, 4, collect, &s); /* upto is a local seq */
  CHECK_EQ(s.n, 2);
  CHECK_EQ(s.seq[0], 3);

  ring_raise_floor(r, (struct msgpos){3000, 5});
  CHECK_EQ(ring_check_resume(r, (struct msgpos){2000, 0}), RING_RESUME_TOO_OLD);
  CHECK_EQ(ring_check_resume(r, (struct msgpos){3000, 5}), RING_RESUME_OK);
  CHECK_EQ(ring_last_pos(r).ms, 3000);
  ring_raise_floor(r, (struct msgpos){1, 0}); /* never lowers */
  CHECK_EQ(ring_floor(r).ms, 3000);
  struct message *m = msg(6);
  m->pos = (struct msgpos){3000, 6};
  ring_push(r, m);
  message_unref(m);
  CHECK_EQ(ring_check_resume(r, (struct msgpos){3000, 6}), RING_RESUME_OK);
  CHECK_EQ(ring_floor(r).ms, 3000); /* evicting 105-0 does not lower it */
  CHECK_EQ(ring_floor(r).seq, 5);
  ring_free(r);
}

/* A message to the given channels at position {0, seq}. */
static struct message *to(uint64_t seq, const char *a, const char *b)
{
  const char *t[2] = {a, b};
  return message_new(seq, t, b ? 2 : 1, NULL);
}

static enum ring_resume resume_on(const struct ring *r, uint64_t seen, const char *ch)
{
  return ring_check_resume_channels(r, P(seen), &ch, 1);
}

/* Per-channel watermarks: a quiet channel resumes below the floor when
 * nothing of its own was evicted after its id; a channel that lost a
 * message does not; a cluster gap (ring_raise_floor) is a loss everywhere;
 * a full watermark table degrades to one mark for all (never a missed
 * loss). */
static void test_watermarks(void)
{
  struct ring *r = mkring(4);
  struct message *m = to(1, "quiet", NULL);
  ring_push(r, m);
  message_unref(m);
  for (uint64_t s = 2; s <= 10; s++) {
    m = to(s, "busy", s == 6 ? "other" : NULL);
    ring_push(r, m);
    message_unref(m);
  }
  /* held: 7..10; evicted: 1 (quiet), 2..6 (busy; 6 also other) */
  CHECK_EQ(oldest_seq(r), 7);
  CHECK_EQ(ring_channel_mark(r, "quiet").seq, 1);
  CHECK_EQ(ring_channel_mark(r, "busy").seq, 6);
  CHECK_EQ(ring_channel_mark(r, "other").seq, 6);
  CHECK_EQ(ring_channel_mark(r, "never").seq, 0);
  CHECK_EQ(ring_marks(r), 3);
  CHECK_EQ(check_resume(r, 1), RING_RESUME_TOO_OLD);   /* the floor alone says lost */
  CHECK_EQ(resume_on(r, 1, "quiet"), RING_RESUME_OK);  /* its one message was seen */
  CHECK_EQ(resume_on(r, 0, "quiet"), RING_RESUME_TOO_OLD); /* ... or not */
  CHECK_EQ(resume_on(r, 1, "busy"), RING_RESUME_TOO_OLD);
  CHECK_EQ(resume_on(r, 6, "busy"), RING_RESUME_OK);
  CHECK_EQ(resume_on(r, 3, "other"), RING_RESUME_TOO_OLD);
  CHECK_EQ(resume_on(r, 3, "never"), RING_RESUME_OK);
  const char *both[2] = {"quiet", "busy"};
  CHECK_EQ(ring_check_resume_channels(r, P(2), both, 2), RING_RESUME_TOO_OLD);
  CHECK_EQ(ring_check_resume_channels(r, P(6), both, 2), RING_RESUME_OK);
  CHECK_EQ(resume_on(r, 11, "quiet"), RING_RESUME_UNKNOWN);
  /* a gap in the cluster's stream: every channel lost up to it */
  ring_raise_floor(r, P(8));
  CHECK_EQ(resume_on(r, 1, "quiet"), RING_RESUME_TOO_OLD);
  CHECK_EQ(resume_on(r, 8, "quiet"), RING_RESUME_OK);
  ring_free(r);

  /* the table's bound: 4 per slot + RING_MARKS_MIN channels */
  r = mkring(1);
  char name[32];
  uint64_t n = RING_MARKS_PER_SLOT + RING_MARKS_MIN + 10;
  for (uint64_t s = 1; s <= n + 1; s++) {
    snprintf(name, sizeof(name), "ch%llu", (unsigned long long)s);
    m = to(s, name, NULL);
    ring_push(r, m);
    message_unref(m);
  }
  CHECK(ring_marks(r) <= RING_MARKS_PER_SLOT + RING_MARKS_MIN);
  /* whatever was forgotten is still lost for its channel: never OK from
   * before its own message */
  int missed = 0;
  for (uint64_t s = 1; s <= n; s++) {
    snprintf(name, sizeof(name), "ch%llu", (unsigned long long)s);
    missed += resume_on(r, s - 1, name) == RING_RESUME_OK;
  }
  CHECK_EQ(missed, 0);
  ring_free(r);
}

static void first_seq(struct message *m, void *arg)
{
  uint64_t *s = arg;
  if (!*s)
    *s = m->seq;
}

/* The byte bound gives up the oldest channel-history entry of all channels
 * first, however many channels: with no channel past its own count, all
 * that any channel lost is older than all that any channel holds. */
static void test_byte_bound_order(void)
{
  int both = 0;
  for (int round = 0; round < 40; round++) {
    size_t nch = rnd_range(2, 300), per = rnd_range(1, 8), max_bytes = rnd_range(30000, 120000);
    struct ring *r = mkring(1);
    ring_set_limits(r, max_bytes, 0, 8);
    char name[32];
    for (uint64_t s = 1; s <= nch * per; s++) {
      snprintf(name, sizeof(name), "c%llu", (unsigned long long)(s * 7919 % nch));
      struct message *m = to(s, name, NULL);
      ring_push(r, m);
      message_unref(m);
    }
    uint64_t lost = 0, held = UINT64_MAX;
    for (size_t c = 0; c < nch; c++) {
      snprintf(name, sizeof(name), "c%zu", c);
      uint64_t mark = ring_channel_mark(r, name).seq, first = 0;
      ring_channel_history(r, name, P(0), 1, first_seq, &first);
      lost = mark > lost ? mark : lost;
      held = first && first < held ? first : held;
    }
    struct ring_stats st;
    ring_get_stats(r, &st);
    CHECK(st.bytes <= max_bytes);
    CHECK(held == UINT64_MAX || lost < held);
    both += lost && held != UINT64_MAX;
    ring_free(r);
  }
  CHECK(both > 0); /* the bound did bite, and left something */
}

int main(void)
{
  check_seed(20240601);
  test_watermarks();
  test_eviction();
  test_resume();
  test_range();
  test_model();
  test_positions();
  test_byte_bound_order();
  return check_done();
}
