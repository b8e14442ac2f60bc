/* Unit tests for core/history.c: one sample per clock second whichever
 * worker ticks, late ticks skipped without loss, a real step back of the
 * clock starting afresh, and the ring's wrap. */
#include "check.h"
#include "history.h"

static void fill(void *arg, struct history_sample *s)
{
  uint64_t *counter = arg;
  s->published = ++*counter;
}

static struct history h;

static void test_one_per_second(void)
{
  uint64_t c = 0;
  history_init(&h);
  CHECK_EQ(history_record(&h, 1000.1, fill, &c), 1);
  CHECK_EQ(history_record(&h, 1000.9, fill, &c), 0); /* the other worker, same second */
  CHECK_EQ(history_record(&h, 1001.0, fill, &c), 1);
  /* a worker whose cached time is a few seconds late: skipped, nothing lost */
  CHECK_EQ(history_record(&h, 997.5, fill, &c), 0);
  CHECK_EQ(history_record(&h, 1002.2, fill, &c), 1);
  struct history_sample out[8];
  CHECK_EQ(history_copy(&h, out, 8), 3);
  CHECK(out[0].time == 1000.1 && out[2].time == 1002.2);
  CHECK_EQ(out[2].published, 3);
  /* the newest cap when cap is short */
  CHECK_EQ(history_copy(&h, out, 2), 2);
  CHECK(out[0].time == 1001.0);
  /* a clock stepped back by more than HISTORY_STEP_BACK seconds: afresh */
  CHECK_EQ(history_record(&h, 1002.5 - HISTORY_STEP_BACK - 2, fill, &c), 1);
  CHECK_EQ(history_copy(&h, out, 8), 1);
  history_destroy(&h);
}

static void test_wrap(void)
{
  uint64_t c = 0;
  history_init(&h);
  for (int i = 0; i < HISTORY_SLOTS + 5; i++)
    CHECK_EQ(history_record(&h, 5000.0 + i, fill, &c), 1);
  static struct history_sample out[HISTORY_SLOTS + 5];
  CHECK_EQ(history_copy(&h, out, HISTORY_SLOTS + 5), HISTORY_SLOTS);
  CHECK(out[0].time == 5005.0);
  CHECK(out[HISTORY_SLOTS - 1].time == 5000.0 + HISTORY_SLOTS + 4);
  for (int i = 1; i < HISTORY_SLOTS; i++)
    CHECK(out[i].time - out[i - 1].time == 1.0);
  history_destroy(&h);
}

int main(void)
{
  test_one_per_second();
  test_wrap();
  return check_done();
}
