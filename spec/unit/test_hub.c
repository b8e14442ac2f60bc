/* Unit tests for core/hub.c: subscriptions, channel lifetime, routing once
 * per subscriber, table growth, and a randomised comparison with a naive
 * model of who should receive what. */
#include "check.h"
#include "hub.h"
#include "message.h"

#define MAXC 5000

static int ids[MAXC]; /* owners are &ids[i], so a delivery names its client */

/* What one hub_route call delivered. */
struct rec {
  const struct message *m;
  size_t calls, wrong_msg;
  unsigned hits[MAXC];
};

static void deliver(void *owner, const struct message *m, void *arg)
{
  struct rec *r = arg;
  r->hits[*(int *)owner]++;
  r->calls++;
  r->wrong_msg += m != r->m;
}

static struct rec rec; /* large: keep it off the stack */
static uint64_t next_seq = 1;

/* Routes a message to targets; returns hub_route's count, fills rec. */
static size_t route(struct hub *h, const char *const *targets, size_t n)
{
  struct message *m = message_new(next_seq++, targets, n, NULL);
  memset(&rec, 0, sizeof(rec));
  rec.m = m;
  size_t calls = hub_route(h, m, deliver, &rec);
  CHECK_EQ(calls, rec.calls);
  CHECK_EQ(rec.wrong_msg, 0);
  message_unref(m);
  return calls;
}

static int matches(const struct hub_sub *s, const char *const *targets, size_t n)
{
  struct message *m = message_new(0, targets, n, NULL);
  int r = hub_sub_matches(s, m);
  message_unref(m);
  return r;
}

struct tally {
  size_t channels, subs;
};

static void tally_fn(const char *ch, size_t n, void *arg)
{
  struct tally *t = arg;
  (void)ch;
  t->channels++;
  t->subs += n;
}

static struct tally tally(const struct hub *h)
{
  struct tally t = {0, 0};
  hub_each_channel(h, tally_fn, &t);
  return t;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_basics(void)
{
  struct hub *h = hub_new();
  CHECK(h != NULL);
  CHECK_EQ(hub_channel_count(h), 0);
  CHECK_EQ(hub_subscribers(h, "a"), 0);

  const char *c1[] = {"a", "b"};
  const char *c2[] = {"b", "b", "c", "b"};
  struct hub_sub *s1 = hub_subscribe(h, &ids[1], c1, N(c1));
  struct hub_sub *s2 = hub_subscribe(h, &ids[2], c2, N(c2));
  CHECK(s1 != NULL && s2 != NULL);
  CHECK(hub_subscribe(h, &ids[3], c1, 0) == NULL);
  CHECK_EQ(hub_channel_count(h), 3);
  CHECK_EQ(hub_subscribers(h, "a"), 1);
  CHECK_EQ(hub_subscribers(h, "b"), 2); /* s2's repeats count once */
  CHECK_EQ(hub_subscribers(h, "c"), 1);
  CHECK_EQ(hub_subscribers(h, "d"), 0);
  struct tally t = tally(h);
  CHECK_EQ(t.channels, 3);
  CHECK_EQ(t.subs, 4);

  const char *out[4] = {0};
  CHECK_EQ(hub_sub_channels(s2, out, 4), 2);
  CHECK(out[0] && out[1] && strcmp(out[0], "b") == 0 && strcmp(out[1], "c") == 0);
  CHECK(out[2] == NULL);
  CHECK_EQ(hub_sub_channels(s1, out, 1), 2); /* the full count, cap entries filled */
  CHECK_STR(out[0], "a");

  const char *t_ab[] = {"a", "b"}, *t_bb[] = {"b", "b"}, *t_aa[] = {"a", "a"};
  const char *t_cba[] = {"c", "b", "a"}, *t_cc[] = {"c", "c"}, *t_zzz[] = {"zzz"};
  const char *t_b[] = {"b"}, *t_mix[] = {"zzz", "c", "zzz", "c"};
  CHECK_EQ(route(h, t_ab, 2), 2);
  CHECK(rec.hits[1] == 1 && rec.hits[2] == 1);
  CHECK_EQ(route(h, t_bb, 2), 2);
  CHECK(rec.hits[1] == 1 && rec.hits[2] == 1);
  CHECK_EQ(route(h, t_aa, 2), 1);
  CHECK(rec.hits[1] == 1 && rec.hits[2] == 0);
  CHECK_EQ(route(h, t_cba, 3), 2);
  CHECK(rec.hits[1] == 1 && rec.hits[2] == 1);
  CHECK_EQ(route(h, t_cc, 2), 1);
  CHECK(rec.hits[1] == 0 && rec.hits[2] == 1);
  CHECK_EQ(route(h, t_mix, 4), 1);
  CHECK(rec.hits[2] == 1);
  CHECK_EQ(route(h, NULL, 0), 0);
  CHECK_EQ(route(h, t_zzz, 1), 0);
  CHECK_EQ(route(h, t_b, 1), 2);
  CHECK_EQ(route(h, t_b, 1), 2); /* the next message is not mistaken for a repeat */

  CHECK(matches(s1, t_ab, 2));
  CHECK(matches(s1, t_aa, 2));
  CHECK(!matches(s1, t_cc, 2));
  CHECK(matches(s2, t_mix, 4));
  CHECK(!matches(s2, t_zzz, 1));
  CHECK(!matches(s2, NULL, 0));

  hub_unsubscribe(h, s1);
  CHECK_EQ(hub_channel_count(h), 2); /* "a" had no one else: freed */
  CHECK_EQ(hub_subscribers(h, "a"), 0);
  CHECK_EQ(hub_subscribers(h, "b"), 1);
  CHECK_EQ(route(h, t_ab, 2), 1);
  CHECK(rec.hits[2] == 1);
  hub_unsubscribe(h, s2);
  hub_unsubscribe(h, NULL);
  CHECK_EQ(hub_channel_count(h), 0);
  t = tally(h);
  CHECK_EQ(t.channels, 0);

  /* A channel that emptied can be used again. */
  s1 = hub_subscribe(h, &ids[1], c1, 1);
  CHECK_EQ(hub_channel_count(h), 1);
  CHECK_EQ(route(h, t_aa, 2), 1);
  hub_unsubscribe(h, s1);
  hub_free(h);
  hub_free(NULL);
}

/* Unsubscribing from the middle of a channel's array moves the last entry
 * into the hole; the moved subscription must still be found and removable. */
static void test_swap_removal(void)
{
  struct hub *h = hub_new();
  struct hub_sub *s[10];
  char name[10][16];
  for (int i = 0; i < 10; i++) {
    snprintf(name[i], sizeof(name[i]), "u:%d", i);
    const char *chs[] = {"x", name[i], "y"};
    s[i] = hub_subscribe(h, &ids[i], chs, 3);
  }
  static const int order[] = {3, 0, 9, 5};
  int gone[10] = {0};
  for (size_t k = 0; k < N(order); k++) {
    hub_unsubscribe(h, s[order[k]]);
    gone[order[k]] = 1;
  }
  const char *tx[] = {"x"}, *txy[] = {"y", "x"};
  CHECK_EQ(route(h, tx, 1), 6);
  size_t bad = 0;
  for (int i = 0; i < 10; i++)
    bad += rec.hits[i] != (gone[i] ? 0u : 1u);
  CHECK_EQ(route(h, txy, 2), 6);
  for (int i = 0; i < 10; i++)
    bad += rec.hits[i] != (gone[i] ? 0u : 1u);
  for (int i = 0; i < 10; i++) {
    const char *tu[] = {name[i]};
    bad += route(h, tu, 1) != (gone[i] ? 0u : 1u);
    bad += !gone[i] && rec.hits[i] != 1;
  }
  CHECK_EQ(bad, 0);
  CHECK_EQ(hub_subscribers(h, "x"), 6);
  CHECK_EQ(hub_channel_count(h), 8);
  static const int rest[] = {8, 1, 2, 7, 4, 6};
  for (size_t k = 0; k < N(rest); k++) {
    hub_unsubscribe(h, s[rest[k]]);
    CHECK_EQ(hub_subscribers(h, "x"), 5 - k);
  }
  CHECK_EQ(hub_channel_count(h), 0);
  hub_free(h);
}

/* Thousands of channels: the table grows well past its first 64 buckets. */
static void test_growth(void)
{
  static struct hub_sub *s[MAXC];
  static char name[MAXC][24];
  struct hub *h = hub_new();
  for (int i = 0; i < MAXC; i++) {
    snprintf(name[i], sizeof(name[i]), "user:%d", i);
    const char *chs[] = {"all", name[i]};
    s[i] = hub_subscribe(h, &ids[i], chs, 2);
  }
  CHECK_EQ(hub_channel_count(h), MAXC + 1);
  CHECK_EQ(hub_subscribers(h, "all"), MAXC);
  size_t bad = 0;
  for (int i = 0; i < MAXC; i++)
    bad += hub_subscribers(h, name[i]) != 1;
  CHECK_EQ(bad, 0);
  struct tally t = tally(h);
  CHECK_EQ(t.channels, MAXC + 1);
  CHECK_EQ(t.subs, 2 * MAXC);

  const char *one[] = {"user:1234"};
  CHECK_EQ(route(h, one, 1), 1);
  CHECK_EQ(rec.hits[1234], 1);
  const char *some[] = {"user:7", "user:4999", "nope", "user:7"};
  CHECK_EQ(route(h, some, 4), 2);
  CHECK(rec.hits[7] == 1 && rec.hits[4999] == 1);
  const char *every[] = {"user:3", "all", "user:3"};
  CHECK_EQ(route(h, every, 3), MAXC);
  bad = 0;
  for (int i = 0; i < MAXC; i++)
    bad += rec.hits[i] != 1;
  CHECK_EQ(bad, 0);

  /* Unsubscribe in a shuffled order. */
  int order[MAXC];
  for (int i = 0; i < MAXC; i++)
    order[i] = i;
  for (int i = MAXC - 1; i > 0; i--) {
    int j = (int)rnd_range(0, (uint64_t)i), tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  bad = 0;
  for (int k = 0; k < MAXC; k++) {
    hub_unsubscribe(h, s[order[k]]);
    bad += hub_subscribers(h, name[order[k]]) != 0;
    bad += hub_subscribers(h, "all") != (size_t)(MAXC - 1 - k);
  }
  CHECK_EQ(bad, 0);
  CHECK_EQ(hub_channel_count(h), 0);

  /* One subscription to 3000 channels: the table grows mid-subscribe. */
  const char *many[3000];
  for (int i = 0; i < 3000; i++)
    many[i] = name[i];
  struct hub_sub *big = hub_subscribe(h, &ids[0], many, 3000);
  struct hub_sub *half = hub_subscribe(h, &ids[1], many + 1500, 1500);
  CHECK_EQ(hub_channel_count(h), 3000);
  CHECK_EQ(hub_sub_channels(big, NULL, 0), 3000);
  const char *tb[] = {"user:0", "user:2999", "user:1500", "user:10"};
  CHECK_EQ(route(h, tb, 4), 2);
  CHECK(rec.hits[0] == 1 && rec.hits[1] == 1);
  CHECK_EQ(route(h, tb, 1), 1);
  hub_unsubscribe(h, big);
  CHECK_EQ(hub_channel_count(h), 1500);
  hub_unsubscribe(h, half);
  CHECK_EQ(hub_channel_count(h), 0);
  hub_free(h);
}

/* The model: each client's channel set as a bit mask over a pool of names. */
#define POOL 40
#define CLIENTS 300

static const char *pool[POOL];
static char pool_names[POOL][24];
static const char *const unknown[] = {"user:999", "ghost", "", "role:", "ALL"};

struct model {
  struct hub_sub *sub[CLIENTS];
  uint64_t mask[CLIENTS];
};

static void model_subscribe(struct hub *h, struct model *md, int c)
{
  const char *chs[8];
  size_t n = (size_t)rnd_range(1, 8);
  md->mask[c] = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned k = (unsigned)(rnd() % POOL);
    if (i && rnd() % 4 == 0)
      chs[i] = chs[rnd() % i]; /* a duplicate */
    else
      chs[i] = pool[k];
    for (unsigned j = 0; j < POOL; j++)
      if (strcmp(chs[i], pool[j]) == 0)
        md->mask[c] |= 1ULL << j;
  }
  md->sub[c] = hub_subscribe(h, &ids[c], chs, n);
  CHECK(md->sub[c] != NULL);
}

/* Channel counts in the hub equal the model's. */
static size_t model_counts(const struct hub *h, const struct model *md)
{
  size_t bad = 0, channels = 0;
  for (unsigned j = 0; j < POOL; j++) {
    size_t n = 0;
    for (int c = 0; c < CLIENTS; c++)
      n += md->sub[c] && (md->mask[c] >> j & 1);
    channels += n > 0;
    bad += hub_subscribers(h, pool[j]) != n;
  }
  bad += hub_channel_count(h) != channels;
  return bad;
}

static size_t model_message(struct hub *h, const struct model *md)
{
  const char *targets[5];
  size_t n = (size_t)rnd_range(0, 5), bad = 0, want_calls = 0;
  uint64_t tmask = 0;
  for (size_t i = 0; i < n; i++) {
    if (i && rnd() % 4 == 0) {
      targets[i] = targets[rnd() % i]; /* a repeat */
    } else if (rnd() % 5 == 0) {
      targets[i] = unknown[rnd() % N(unknown)];
    } else {
      unsigned k = (unsigned)(rnd() % POOL);
      targets[i] = pool[k];
      tmask |= 1ULL << k;
    }
  }
  struct message *m = message_new(next_seq++, targets, n, NULL);
  memset(&rec, 0, sizeof(rec));
  rec.m = m;
  size_t calls = hub_route(h, m, deliver, &rec);
  for (int c = 0; c < CLIENTS; c++) {
    unsigned want = md->sub[c] && (md->mask[c] & tmask) ? 1 : 0;
    want_calls += want;
    if (rec.hits[c] != want) {
      if (!bad)
        fprintf(stderr, "client %d got %u, want %u (seq %" PRIu64 ", %zu targets)\n", c,
                rec.hits[c], want, m->seq, n);
      bad++;
    }
    if (md->sub[c])
      bad += hub_sub_matches(md->sub[c], m) != (int)want;
  }
  bad += calls != want_calls || rec.calls != want_calls || rec.wrong_msg;
  message_unref(m);
  return bad;
}

static void test_model(void)
{
  static const char *const fixed[] = {"all", "role:x", "role:admin", "role:ops", "role:guest"};
  for (unsigned j = 0; j < POOL; j++) {
    if (j < N(fixed))
      snprintf(pool_names[j], sizeof(pool_names[j]), "%s", fixed[j]);
    else
      snprintf(pool_names[j], sizeof(pool_names[j]), "user:%u", j - (unsigned)N(fixed));
    pool[j] = pool_names[j];
  }

  static struct model md;
  for (int round = 0; round < 200; round++) {
    struct hub *h = hub_new();
    size_t bad = 0;
    int nclients = (int)rnd_range(1, CLIENTS);
    memset(&md, 0, sizeof(md));
    for (int c = 0; c < nclients; c++)
      model_subscribe(h, &md, c);
    bad += model_counts(h, &md);

    int steps = (int)rnd_range(20, 120);
    for (int step = 0; step < steps; step++) {
      unsigned op = (unsigned)(rnd() % 10);
      int c = (int)(rnd() % (unsigned)nclients);
      if (op < 2 && md.sub[c]) {
        hub_unsubscribe(h, md.sub[c]);
        md.sub[c] = NULL;
        bad += model_counts(h, &md);
      } else if (op < 3 && !md.sub[c]) {
        model_subscribe(h, &md, c);
        bad += model_counts(h, &md);
      } else {
        bad += model_message(h, &md);
      }
    }
    if (bad)
      fprintf(stderr, "round %d: %d clients, %d steps\n", round, nclients, steps);
    CHECK_EQ(bad, 0);

    for (int c = 0; c < nclients; c++)
      hub_unsubscribe(h, md.sub[c]);
    CHECK_EQ(hub_channel_count(h), 0);
    hub_free(h);
  }
}

int main(void)
{
  check_seed(20240601);
  for (int i = 0; i < MAXC; i++)
    ids[i] = i;
  test_basics();
  test_swap_removal();
  test_growth();
  test_model();
  return check_done();
}
