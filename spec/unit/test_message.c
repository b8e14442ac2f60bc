/* Unit tests for core/message.c: id format/parse and message lifetime. */
#include "check.h"
#include "message.h"
#include "sse.h"

#define REFS(x) atomic_load(&(x)->refs)

static void round_trip(uint64_t epoch, uint64_t seq)
{
  char id[MESSAGE_ID_MAX], want[64];
  uint64_t e = ~epoch, s = ~seq;
  message_id_format(id, epoch, seq);
  snprintf(want, sizeof(want), "%" PRIu64 "-%" PRIu64, epoch, seq);
  CHECK_STR(id, want);
  CHECK(message_id_parse(id, &e, &s) == 0);
  CHECK_EQ(e, epoch);
  CHECK_EQ(s, seq);
}

static void test_id_round_trip(void)
{
  char id[MESSAGE_ID_MAX];
  message_id_format(id, 1700000000000ULL, 42);
  CHECK_STR(id, "1700000000000-42");
  message_id_format(id, UINT64_MAX, UINT64_MAX);
  CHECK_STR(id, "18446744073709551615-18446744073709551615");

  round_trip(0, 0);
  round_trip(1, 1);
  round_trip(1700000000000ULL, 42);
  round_trip(UINT64_MAX, 0);
  round_trip(0, UINT64_MAX);
  round_trip(UINT64_MAX, UINT64_MAX);
  round_trip(UINT64_MAX / 10, UINT64_MAX / 10 + 1);
  for (int i = 0; i < 2000; i++) {
    uint64_t epoch = rnd_u64();
    uint64_t seq = rnd_u64();
    round_trip(epoch, seq);
  }
}

static void test_id_parse(void)
{
  static const char *const bad[] = {
      "", "-", "1-", "-1", "a-1", "1-a", "1-2-3", "1--2", "1 -2", "1- 2", " 1-2",
      "1-2 ", "1-2\n", "12", "+1-2", "1-+2", "-1-2", "0x1-2", "1.0-2",
      "18446744073709551616-1",  /* 2^64 */
      "1-18446744073709551616",  /* 2^64 */
      "18446744073709551620-1",  /* 2^64 + 4: last digit overflows */
      "99999999999999999999-1",  /* 20 digits, > 2^64 */
      "1-99999999999999999999",
      "184467440737095516150-1", /* 21 digits */
      "1-1844674407370955161500",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint64_t e = 0, s = 0;
    int rc = message_id_parse(bad[i], &e, &s);
    CHECK_EQ(rc, -1);
    if (rc != -1)
      fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
  }

  uint64_t e = 0, s = 0;
  CHECK(message_id_parse("18446744073709551615-18446744073709551614", &e, &s) == 0);
  CHECK_EQ(e, UINT64_MAX);
  CHECK_EQ(s, UINT64_MAX - 1);
  CHECK(message_id_parse("0-0", &e, &s) == 0);
  CHECK_EQ(e, 0);
  CHECK_EQ(s, 0);
  CHECK(message_id_parse("007-010", &e, &s) == 0); /* digits are digits */
  CHECK_EQ(e, 7);
  CHECK_EQ(s, 10);
}

static void test_message_new(void)
{
  char a[] = "user:42", b[] = "all", c[] = "";
  const char *targets[] = {a, b, c, a};
  struct frame *f = frame_new("x", 1);
  struct message *m = message_new(9, targets, 4, f);
  CHECK(m != NULL);
  CHECK_EQ(m->seq, 9);
  CHECK_EQ(m->ntargets, 4);
  CHECK(m->frame == f);
  CHECK_EQ(REFS(m), 1);
  CHECK_EQ(REFS(f), 1); /* the caller's reference was taken, not a new one */
  /* Targets are copies: scribbling on the originals changes nothing. */
  memset(a, 'z', sizeof(a) - 1);
  memset(b, 'z', sizeof(b) - 1);
  CHECK_STR(m->targets[0], "user:42");
  CHECK_STR(m->targets[1], "all");
  CHECK_STR(m->targets[2], "");
  CHECK_STR(m->targets[3], "user:42");
  for (size_t i = 0; i < 4; i++)
    CHECK(m->targets[i] != targets[i]);

  CHECK(message_ref(m) == m);
  CHECK_EQ(REFS(m), 2);
  frame_ref(f); /* watch the frame outlive the message */
  CHECK_EQ(REFS(f), 2);
  message_unref(m);
  CHECK_EQ(REFS(m), 1);
  CHECK_EQ(REFS(f), 2);
  message_unref(m); /* last reference drops the frame's too */
  CHECK_EQ(REFS(f), 1);
  frame_unref(f);
  message_unref(NULL);

  m = message_new(1, NULL, 0, frame_new("", 0));
  CHECK(m != NULL);
  CHECK_EQ(m->ntargets, 0);
  message_unref(m);

  /* Many long targets: the strings after the array must not overlap it. */
  char names[100][40];
  const char *many[100];
  for (int i = 0; i < 100; i++) {
    snprintf(names[i], sizeof(names[i]), "channel-with-a-long-name:%d", i);
    many[i] = names[i];
  }
  m = message_new(2, many, 100, NULL);
  CHECK(m != NULL);
  size_t bad = 0;
  for (int i = 0; i < 100; i++)
    bad += strcmp(m->targets[i], names[i]) != 0;
  CHECK_EQ(bad, 0);
  message_unref(m);
}

int main(void)
{
  check_seed(20240601);
  test_id_round_trip();
  test_id_parse();
  test_message_new();
  return check_done();
}
