/* Unit tests for core/subs.c: a stream's channel set after a change (order,
 * repeats, the cap), the store (kept sets, the per-user channel limit, the
 * user limit, expiry, merging into a new stream's channels) and the rules
 * every change is checked against. */
#include "check.h"
#include "subs.h"
#include "validate.h"

static int same(char **got, size_t n, const char *const *want, size_t m)
{
  if (n != m)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(got[i], want[i]) != 0)
      return 0;
  return 1;
}

static void free_list(char **v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static void test_apply(void)
{
  const char *cur[] = {"all", "role:x", "user:1"};
  const char *add[] = {"room:1", "all", "room:2", "room:1"};
  const char *del[] = {"role:x", "nothere"};
  struct subs_change c = {.user = "1", .add = add, .nadd = 4, .del = del, .ndel = 2};
  size_t n, dropped;
  int changed;
  char **out = subs_apply(cur, 3, &c, 256, &n, &changed, &dropped);
  const char *want[] = {"all", "user:1", "room:1", "room:2"};
  CHECK(same(out, n, want, 4));
  CHECK(changed);
  CHECK_EQ(dropped, 0);
  free_list(out, n);

  /* nothing new: unchanged */
  struct subs_change same_c = {.user = "1", .add = cur, .nadd = 2};
  out = subs_apply(cur, 3, &same_c, 256, &n, &changed, &dropped);
  CHECK(same(out, n, cur, 3));
  CHECK(!changed);
  free_list(out, n);

  /* the cap keeps the current ones first and counts what is left out */
  out = subs_apply(cur, 3, &c, 3, &n, &changed, &dropped);
  const char *capped[] = {"all", "user:1", "room:1"};
  CHECK(same(out, n, capped, 3));
  CHECK_EQ(dropped, 1);
  free_list(out, n);

  /* everything removed: an empty set */
  struct subs_change all_gone = {.user = "1", .del = cur, .ndel = 3};
  out = subs_apply(cur, 3, &all_gone, 256, &n, &changed, &dropped);
  CHECK_EQ(n, 0);
  CHECK(changed);
  free_list(out, n);
}

static void test_store(void)
{
  struct subs *s = subs_new(2, 10);
  const char *a[] = {"room:a", "room:b"}, *b[] = {"room:b"};
  struct subs_change add_u1 = {.user = "u1", .add = a, .nadd = 2};
  CHECK_EQ(subs_record(s, &add_u1, 100, 0), SUBS_OK);
  /* a client change is not kept */
  struct subs_change by_id = {.client = "0-1", .add = a, .nadd = 2};
  CHECK_EQ(subs_record(s, &by_id, 100, 0), SUBS_OK);
  size_t users, channels;
  subs_counts(s, 100, &users, &channels);
  CHECK_EQ(users, 1);
  CHECK_EQ(channels, 2);

  /* merged into a new stream's channels, without repeats, up to max */
  char **list = calloc(2, sizeof(char *));
  size_t n = 2;
  list[0] = strdup("all");
  list[1] = strdup("room:b");
  CHECK_EQ(subs_merge(s, "u1", 101, &list, &n, 256), 1);
  const char *want[] = {"all", "room:b", "room:a"};
  CHECK(same(list, n, want, 3));
  CHECK_EQ(subs_merge(s, "nobody", 101, &list, &n, 256), 0);
  free_list(list, n);

  /* removal; the user limit; expiry frees a place */
  struct subs_change del_u1 = {.user = "u1", .del = b, .ndel = 1};
  CHECK_EQ(subs_record(s, &del_u1, 102, 0), SUBS_OK);
  struct subs_change add_u2 = {.user = "u2", .add = b, .nadd = 1};
  struct subs_change add_u3 = {.user = "u3", .add = b, .nadd = 1};
  CHECK_EQ(subs_record(s, &add_u2, 103, 0), SUBS_OK);
  CHECK_EQ(subs_record(s, &add_u3, 103, 1), SUBS_FULL); /* check_only says the same */
  CHECK_EQ(subs_record(s, &add_u3, 103, 0), SUBS_FULL);
  CHECK_EQ(subs_record(s, &add_u3, 112.5, 0), SUBS_OK); /* u1 (changed at 102) expired at 112 */
  list = NULL;
  n = 0;
  CHECK_EQ(subs_merge(s, "u1", 112.5, &list, &n, 256), 0);
  CHECK_EQ(subs_merge(s, "u3", 112.5, &list, &n, 256), 1);
  free_list(list, n);

  /* at most STREAM_MAX_CHANNELS kept per user */
  static char names[STREAM_MAX_CHANNELS + 1][16];
  const char *many[STREAM_MAX_CHANNELS + 1];
  for (int i = 0; i <= STREAM_MAX_CHANNELS; i++) {
    snprintf(names[i], sizeof(names[i]), "c%d", i);
    many[i] = names[i];
  }
  struct subs_change full = {.user = "u3", .add = many, .nadd = STREAM_MAX_CHANNELS - 1};
  CHECK_EQ(subs_record(s, &full, 113, 0), SUBS_OK); /* room:b + 255 = 256 */
  struct subs_change one_more = {.user = "u3", .add = many + STREAM_MAX_CHANNELS, .nadd = 1};
  CHECK_EQ(subs_record(s, &one_more, 113, 0), SUBS_TOO_MANY_CHANNELS);

  /* subs_set mirrors a kept set (cluster), and n == 0 forgets */
  CHECK_EQ(subs_set(s, "u9", a, 2, 200), SUBS_OK);
  list = NULL;
  n = 0;
  CHECK_EQ(subs_merge(s, "u9", 150, &list, &n, 256), 2);
  free_list(list, n);
  CHECK_EQ(subs_set(s, "u9", NULL, 0, 0), SUBS_OK);
  list = NULL;
  n = 0;
  CHECK_EQ(subs_merge(s, "u9", 150, &list, &n, 256), 0);
  free(list);
  subs_free(s);
}

static void test_check(void)
{
  char field[32], msg[300];
  const char *ok[] = {"room:1"}, *empty[] = {""}, *ctl[] = {"a\nb"};
  struct subs_change c = {.user = "u", .add = ok, .nadd = 1};
  CHECK(subs_check(&c, field, sizeof(field), msg, sizeof(msg)) == NULL);
  struct subs_change both = {.user = "u", .client = "0-1", .add = ok, .nadd = 1};
  CHECK(subs_check(&both, field, sizeof(field), msg, sizeof(msg)) != NULL);
  CHECK(strcmp(field, "user") == 0);
  struct subs_change none = {.client = "0-1"};
  CHECK(subs_check(&none, field, sizeof(field), msg, sizeof(msg)) != NULL);
  CHECK(strcmp(field, "subscribe") == 0);
  struct subs_change bad_name = {.user = "u", .del = empty, .ndel = 1};
  CHECK(subs_check(&bad_name, field, sizeof(field), msg, sizeof(msg)) != NULL);
  CHECK(strcmp(field, "unsubscribe") == 0);
  struct subs_change bad_ctl = {.user = "u", .add = ctl, .nadd = 1};
  CHECK(subs_check(&bad_ctl, field, sizeof(field), msg, sizeof(msg)) != NULL);
  struct subs_change bad_user = {.user = "a\tb", .add = ok, .nadd = 1};
  CHECK(subs_check(&bad_user, field, sizeof(field), msg, sizeof(msg)) != NULL);
  CHECK(strcmp(field, "user") == 0);
  struct subs_change in_both = {.user = "u", .add = ok, .nadd = 1, .del = ok, .ndel = 1};
  CHECK(subs_check(&in_both, field, sizeof(field), msg, sizeof(msg)) != NULL);
  CHECK(strstr(msg, "both") != NULL);
}

int main(void)
{
  test_apply();
  test_store();
  test_check();
  return check_done();
}
