/* Unit tests for core/sse.c: frame lifetime, exact framing bytes, event-name
 * validation, and a round trip through an independent EventSource parser fed
 * whole, byte by byte and in random chunks. */
#include "check.h"
#include "sse.h"

#include <json-c/json_tokener.h>
#include <json-c/json_object.h>

#include <event2/buffer.h>

#define REFS(f) atomic_load(&(f)->refs)
#define ID "1700000000000-7"

/* A growable byte string for the parser and the payload generator. */
struct dbuf {
  char *p;
  size_t len, cap;
};

static void db_put(struct dbuf *b, const char *s, size_t n)
{
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
      cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p)
      abort();
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void db_puts(struct dbuf *b, const char *s) { db_put(b, s, strlen(s)); }

static char *db_strdup(const struct dbuf *b)
{
  char *s = malloc(b->len + 1);
  if (!s)
    abort();
  if (b->len)
    memcpy(s, b->p, b->len);
  s[b->len] = '\0';
  return s;
}

/* An EventSource parser written from the WHATWG rules, independent of sse.c:
 * lines end at CR, LF or CRLF; a blank line dispatches; "field: value" with
 * one leading space stripped; data lines are joined with LF; the last event
 * id persists across events; an event with an empty data buffer is dropped. */
struct sse_event {
  char *id, *type, *data;
};

#define MAX_EVENTS 256

struct sse_parser {
  struct dbuf line, data, type, last_id;
  int pending_cr;
  size_t nev;
  struct sse_event ev[MAX_EVENTS];
};

static void p_dispatch(struct sse_parser *p)
{
  if (p->data.len == 0) {
    p->type.len = 0;
    return;
  }
  p->data.len--; /* the LF after the last data line */
  if (p->nev < MAX_EVENTS) {
    struct sse_event *e = &p->ev[p->nev++];
    e->id = db_strdup(&p->last_id);
    e->type = p->type.len ? db_strdup(&p->type) : strdup("message");
    e->data = db_strdup(&p->data);
  }
  p->data.len = 0;
  p->type.len = 0;
}

static void p_line(struct sse_parser *p)
{
  const char *l = p->line.p;
  size_t n = p->line.len;
  if (n == 0) {
    p_dispatch(p);
    return;
  }
  p->line.len = 0;
  if (l[0] == ':')
    return;
  const char *colon = memchr(l, ':', n);
  size_t flen = colon ? (size_t)(colon - l) : n;
  const char *v = colon ? colon + 1 : l + n;
  size_t vlen = (size_t)(l + n - v);
  if (vlen && v[0] == ' ') {
    v++;
    vlen--;
  }
  if (flen == 5 && memcmp(l, "event", 5) == 0) {
    p->type.len = 0;
    db_put(&p->type, v, vlen);
  } else if (flen == 4 && memcmp(l, "data", 4) == 0) {
    db_put(&p->data, v, vlen);
    db_put(&p->data, "\n", 1);
  } else if (flen == 2 && memcmp(l, "id", 2) == 0 && !memchr(v, '\0', vlen)) {
    p->last_id.len = 0;
    db_put(&p->last_id, v, vlen);
  }
}

static void p_feed(struct sse_parser *p, const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (p->pending_cr) {
      p->pending_cr = 0;
      if (c == '\n')
        continue;
    }
    if (c == '\r') {
      p_line(p);
      p->pending_cr = 1;
    } else if (c == '\n') {
      p_line(p);
    } else {
      db_put(&p->line, &c, 1);
    }
  }
}

static void p_init(struct sse_parser *p) { memset(p, 0, sizeof(*p)); db_puts(&p->last_id, ""); }

static void p_free(struct sse_parser *p)
{
  for (size_t i = 0; i < p->nev; i++) {
    free(p->ev[i].id);
    free(p->ev[i].type);
    free(p->ev[i].data);
  }
  free(p->line.p);
  free(p->data.p);
  free(p->type.p);
  free(p->last_id.p);
}

/* Line breaks CRLF and CR become LF: what a parser gives back. */
static char *normalize(const char *s, size_t n)
{
  struct dbuf b = {0};
  db_puts(&b, "");
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\r') {
      db_put(&b, "\n", 1);
      if (i + 1 < n && s[i + 1] == '\n')
        i++;
    } else {
      db_put(&b, &s[i], 1);
    }
  }
  return b.p;
}

static char *envelope(const char *id, int handler_id, const char *json, size_t json_len)
{
  struct dbuf b = {0};
  char head[128];
  snprintf(head, sizeof(head), "{\"id\":\"%s\",\"handler_id\":%d,\"data\":", id, handler_id);
  db_puts(&b, head);
  db_put(&b, json, json_len);
  db_puts(&b, "}");
  char *n = normalize(b.p, b.len);
  free(b.p);
  return n;
}

static int json_valid(const char *s)
{
  struct json_tokener *tok = json_tokener_new();
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
  struct json_object *o = json_tokener_parse_ex(tok, s, (int)strlen(s));
  int ok = o && json_tokener_get_error(tok) == json_tokener_success &&
           json_tokener_get_parse_end(tok) == strlen(s);
  json_object_put(o);
  json_tokener_free(tok);
  return ok;
}

static void test_frame_refs(void)
{
  struct frame *f = frame_new("hello", 5);
  CHECK(f != NULL);
  CHECK_EQ(REFS(f), 1);
  CHECK_EQ(f->len, 5);
  CHECK(f->data[5] == '\0');

  struct evbuffer *a = evbuffer_new(), *b = evbuffer_new(), *c = evbuffer_new();
  char out[16];
  CHECK(frame_add_to(f, a) == 0);
  CHECK_EQ(REFS(f), 2);
  CHECK(frame_add_to(f, b) == 0);
  CHECK(frame_add_to(f, b) == 0);
  CHECK_EQ(REFS(f), 4);
  CHECK_EQ(evbuffer_get_length(b), 10);
  /* copyout reads without touching the chains (pullup would copy them out
   * and drop the references early). */
  CHECK_EQ(evbuffer_copyout(b, out, sizeof(out)), 10);
  CHECK_MEM(out, 10, "hellohello");

  evbuffer_free(a);
  CHECK_EQ(REFS(f), 3);
  /* Moving chains to another buffer moves the references, not the bytes. */
  CHECK(evbuffer_add_buffer(c, b) == 0);
  CHECK_EQ(REFS(f), 3);
  evbuffer_free(b);
  CHECK_EQ(REFS(f), 3);

  frame_unref(f); /* the creator's reference: the buffer keeps it alive */
  CHECK_EQ(REFS(f), 2);
  CHECK_EQ(evbuffer_copyout(c, out, sizeof(out)), 10);
  CHECK_MEM(out, 10, "hellohello");
  CHECK_EQ(REFS(f), 2);
  evbuffer_free(c); /* last reference: ASan would flag a leak or double free */

  /* Draining releases the reference as soon as the chain is consumed. */
  f = frame_new("xy", 2);
  a = evbuffer_new();
  CHECK(frame_add_to(f, a) == 0);
  CHECK_EQ(REFS(f), 2);
  evbuffer_drain(a, 1);
  CHECK_EQ(REFS(f), 2);
  evbuffer_drain(a, 1);
  CHECK_EQ(REFS(f), 1);
  evbuffer_free(a);
  CHECK(frame_ref(f) == f);
  CHECK_EQ(REFS(f), 2);
  frame_unref(f);
  frame_unref(f);

  f = frame_new(NULL, 0);
  CHECK(f != NULL && f->len == 0 && f->data[0] == '\0');
  frame_unref(f);
  frame_unref(NULL);
}

/* Frames a message, checks the exact bytes, then parses them back. */
static void check_message(const char *event, int handler_id, const char *json, size_t json_len,
                          const char *want)
{
  struct frame *f = sse_frame_message(ID, event, handler_id, json, json_len);
  CHECK(f != NULL);
  if (!f)
    return;
  CHECK_MEM(f->data, f->len, want);
  CHECK(f->data[f->len] == '\0');

  struct sse_parser p;
  p_init(&p);
  p_feed(&p, f->data, f->len);
  CHECK_EQ(p.nev, 1);
  if (p.nev == 1) {
    char *env = envelope(ID, handler_id, json, json_len);
    CHECK_STR(p.ev[0].id, ID);
    CHECK_STR(p.ev[0].type, event ? event : "message");
    CHECK_STR(p.ev[0].data, env);
    CHECK(json_valid(p.ev[0].data));
    free(env);
  }
  p_free(&p);
  frame_unref(f);
}

#define HEAD "{\"id\":\"" ID "\",\"handler_id\":2,\"data\":"

static void test_frame_message(void)
{
  check_message(NULL, 2, "{\"a\":1}", 7, "id: " ID "\ndata: " HEAD "{\"a\":1}}\n\n");
  check_message("chat", 2, "{\"a\":1}", 7,
                "id: " ID "\nevent: chat\ndata: " HEAD "{\"a\":1}}\n\n");
  check_message("tinysse.x", -1, "null", 4,
                "id: " ID "\nevent: tinysse.x\ndata: {\"id\":\"" ID "\",\"handler_id\":-1,\"data\":null}\n\n");
  /* json_len bounds the payload; the rest of the string is not read. */
  check_message(NULL, 2, "[1]garbage", 3, "id: " ID "\ndata: " HEAD "[1]}\n\n");

  const char *lf = "id: " ID "\ndata: " HEAD "{\"a\":\ndata: 1}}\n\n";
  check_message(NULL, 2, "{\"a\":\n1}", 8, lf);
  check_message(NULL, 2, "{\"a\":\r\n1}", 9, lf);
  check_message(NULL, 2, "{\"a\":\r1}", 8, lf);
  check_message(NULL, 2, "[1,\r\n2,\n3,\r4]", 13,
                "id: " ID "\ndata: " HEAD "[1,\ndata: 2,\ndata: 3,\ndata: 4]}\n\n");
  /* Breaks at either end of the payload, and empty lines inside it: an empty
   * data line, never a blank line that would end the event early. */
  check_message(NULL, 2, "[1]\n", 4, "id: " ID "\ndata: " HEAD "[1]\ndata: }\n\n");
  check_message(NULL, 2, "[1]\r", 4, "id: " ID "\ndata: " HEAD "[1]\ndata: }\n\n");
  check_message(NULL, 2, "\n[1]", 4, "id: " ID "\ndata: " HEAD "\ndata: [1]}\n\n");
  check_message(NULL, 2, "[1,\n\n2]", 7, "id: " ID "\ndata: " HEAD "[1,\ndata: \ndata: 2]}\n\n");
  check_message(NULL, 2, "[1,\r\n\r\n2]", 9, "id: " ID "\ndata: " HEAD "[1,\ndata: \ndata: 2]}\n\n");
  check_message(NULL, 2, "[1,\n\r2]", 7, "id: " ID "\ndata: " HEAD "[1,\ndata: \ndata: 2]}\n\n");
  /* Text that looks like SSE fields stays inside its data line. */
  check_message("e", 2, "\"\\ndata: id: 9\"", 15,
                "id: " ID "\nevent: e\ndata: " HEAD "\"\\ndata: id: 9\"}\n\n");
}

static void check_event(const char *id, const char *event, const char *json, const char *want)
{
  struct frame *f = sse_frame_event(id, event, json);
  CHECK(f != NULL);
  if (!f)
    return;
  CHECK_MEM(f->data, f->len, want);
  struct sse_parser p;
  p_init(&p);
  p_feed(&p, f->data, f->len);
  CHECK_EQ(p.nev, 1);
  if (p.nev == 1) {
    char *n = normalize(json, strlen(json));
    CHECK_STR(p.ev[0].id, id ? id : "");
    CHECK_STR(p.ev[0].type, event);
    CHECK_STR(p.ev[0].data, n);
    CHECK(json_valid(p.ev[0].data));
    free(n);
  }
  p_free(&p);
  frame_unref(f);
}

static void test_frame_event(void)
{
  check_event("5-1", "tinysse.reset", "{}", "id: 5-1\nevent: tinysse.reset\ndata: {}\n\n");
  check_event(NULL, "tinysse.auth", "{\"ok\":true}",
              "event: tinysse.auth\ndata: {\"ok\":true}\n\n");
  check_event(NULL, "e", "{\r\n\"a\":1\n}", "event: e\ndata: {\ndata: \"a\":1\ndata: }\n\n");
}

static void test_event_name_ok(void)
{
  char name[80];
  CHECK(!sse_event_name_ok(""));
  CHECK(sse_event_name_ok("x"));
  CHECK(sse_event_name_ok("chat.message"));
  CHECK(sse_event_name_ok("tinysse.reset"));
  CHECK(sse_event_name_ok("a:b"));
  memset(name, 'a', 64);
  name[64] = '\0';
  CHECK(sse_event_name_ok(name));
  name[64] = 'a';
  name[65] = '\0';
  CHECK(!sse_event_name_ok(name));
  memset(name, 'a', 79);
  name[79] = '\0';
  CHECK(!sse_event_name_ok(name));
  CHECK(!sse_event_name_ok(" "));
  CHECK(!sse_event_name_ok("a b"));
  CHECK(!sse_event_name_ok(" a"));
  CHECK(!sse_event_name_ok("a "));
  CHECK(!sse_event_name_ok("a\nb"));
  CHECK(!sse_event_name_ok("a\n"));
  CHECK(!sse_event_name_ok("\n"));
  CHECK(!sse_event_name_ok("a\rb"));
  CHECK(!sse_event_name_ok("a\r"));
  CHECK(!sse_event_name_ok("a\tb"));
  CHECK(!sse_event_name_ok("a\x01"));
  CHECK(!sse_event_name_ok("\x1f"));
  CHECK(!sse_event_name_ok("a\x7f"));
  for (int c = 1; c < 0x80; c++) {
    name[0] = 'x';
    name[1] = (char)c;
    name[2] = '\0';
    CHECK_EQ(sse_event_name_ok(name), c > 0x20 && c < 0x7f);
  }
}

/* The parser itself, on inputs written by hand. */
static void test_parser(void)
{
  static const char in[] = ": comment\r\nid:1\rdata:a\r\ndata\n\nevent: x\ndata:  b\n\n"
                           "data: lost\nid: 2\nevent: y\n\n"
                           "data\n\nretry: 5\nunknown: q\ndata: c\r\r";
  struct sse_parser p;
  p_init(&p);
  p_feed(&p, in, sizeof(in) - 1);
  CHECK_EQ(p.nev, 5);
  if (p.nev == 5) {
    CHECK_STR(p.ev[0].id, "1");
    CHECK_STR(p.ev[0].type, "message");
    CHECK_STR(p.ev[0].data, "a\n");
    CHECK_STR(p.ev[1].type, "x");
    CHECK_STR(p.ev[1].data, " b");
    /* The id set before a dispatch is carried to later events; a bare "data"
     * line gives an event with empty data. */
    CHECK_STR(p.ev[2].data, "lost");
    CHECK_STR(p.ev[2].id, "2");
    CHECK_STR(p.ev[2].type, "y");
    CHECK_STR(p.ev[3].data, "");
    CHECK_STR(p.ev[3].type, "message");
    CHECK_STR(p.ev[4].data, "c"); /* CR CR: a line, then a blank line */
    CHECK_STR(p.ev[4].id, "2");
  }
  p_free(&p);
}

/* Random JSON whose whitespace includes every kind of line break. */
static void gen_ws(struct dbuf *b)
{
  static const char *const ws[] = {"", "", " ", "\n", "\r\n", "\r", "\n\n", "\r\r", "\n\r", "\t"};
  db_puts(b, ws[rnd() % (sizeof(ws) / sizeof(ws[0]))]);
}

static void gen_json(struct dbuf *b, int depth)
{
  static const char *const atoms[] = {"1", "-2.5e3", "true", "false", "null", "\"\"",
                                      "\"data: x\"", "\"id:\\n7\"", "\"event:\\r\\n\"",
                                      "\": \"", "\"\\u00e9\xc3\xa9\""};
  unsigned k = (unsigned)(depth > 3 ? 0 : rnd() % 4);
  if (k < 2) {
    db_puts(b, atoms[rnd() % (sizeof(atoms) / sizeof(atoms[0]))]);
    return;
  }
  int n = (int)rnd_range(0, 4);
  db_puts(b, k == 2 ? "[" : "{");
  for (int i = 0; i < n; i++) {
    gen_ws(b);
    if (i)
      db_puts(b, ",");
    gen_ws(b);
    if (k == 3) {
      db_puts(b, "\"k:\"");
      gen_ws(b);
      db_puts(b, ":");
      gen_ws(b);
    }
    gen_json(b, depth + 1);
  }
  gen_ws(b);
  db_puts(b, k == 2 ? "]" : "}");
}

struct expect {
  char *id, *type, *data;
};

static void check_events(const struct sse_parser *p, const struct expect *want, size_t n,
                         const char *how)
{
  size_t bad = 0;
  CHECK_EQ(p->nev, n);
  for (size_t i = 0; i < n && i < p->nev; i++)
    if (strcmp(p->ev[i].id, want[i].id) || strcmp(p->ev[i].type, want[i].type) ||
        strcmp(p->ev[i].data, want[i].data)) {
      if (!bad++)
        fprintf(stderr, "event %zu (%s): id %s type %s data %s\n", i, how, p->ev[i].id,
                p->ev[i].type, p->ev[i].data);
    }
  CHECK_EQ(bad, 0);
}

static void test_round_trip(void)
{
  for (int round = 0; round < 200; round++) {
    size_t n = (size_t)rnd_range(1, 12);
    struct dbuf stream = {0};
    struct expect want[12];
    char last_id[64] = "";
    for (size_t i = 0; i < n; i++) {
      char id[64], ev[80];
      const char *event = NULL;
      uint64_t epoch = rnd_u64();
      uint64_t seq = rnd() % 100000;
      snprintf(id, sizeof(id), "%" PRIu64 "-%" PRIu64, epoch, seq);
      switch (rnd() % 4) {
      case 0:
        break;
      case 1:
        event = "chat";
        break;
      default: {
        size_t len = (size_t)rnd_range(1, 64);
        for (size_t j = 0; j < len; j++)
          ev[j] = (char)rnd_range(0x21, 0x7e);
        ev[len] = '\0';
        CHECK(sse_event_name_ok(ev));
        event = ev;
      }
      }
      struct dbuf json = {0};
      gen_json(&json, 0);
      int control = rnd() % 5 == 0;
      struct frame *f;
      if (control) {
        int with_id = (int)(rnd() % 2);
        f = sse_frame_event(with_id ? id : NULL, event ? event : "tinysse.reset", json.p);
        if (with_id)
          snprintf(last_id, sizeof(last_id), "%s", id);
        want[i].data = normalize(json.p, json.len);
        want[i].type = strdup(event ? event : "tinysse.reset");
      } else {
        int handler_id = (int)(rnd() % 2000) - 1000;
        f = sse_frame_message(id, event, handler_id, json.p, json.len);
        snprintf(last_id, sizeof(last_id), "%s", id);
        want[i].data = envelope(id, handler_id, json.p, json.len);
        want[i].type = strdup(event ? event : "message");
        CHECK(json_valid(want[i].data));
      }
      want[i].id = strdup(last_id);
      CHECK(f != NULL);
      if (f)
        db_put(&stream, f->data, f->len);
      frame_unref(f);
      free(json.p);
    }

    struct sse_parser p;
    p_init(&p);
    p_feed(&p, stream.p, stream.len);
    check_events(&p, want, n, "whole");
    p_free(&p);

    p_init(&p);
    for (size_t i = 0; i < stream.len; i++)
      p_feed(&p, stream.p + i, 1);
    check_events(&p, want, n, "byte by byte");
    p_free(&p);

    p_init(&p);
    for (size_t i = 0; i < stream.len;) {
      size_t k = (size_t)rnd_range(1, 23);
      if (k > stream.len - i)
        k = stream.len - i;
      p_feed(&p, stream.p + i, k);
      i += k;
    }
    check_events(&p, want, n, "chunks");
    p_free(&p);

    for (size_t i = 0; i < n; i++) {
      free(want[i].id);
      free(want[i].type);
      free(want[i].data);
    }
    free(stream.p);
  }
}

int main(void)
{
  check_seed(20240601);
  test_frame_refs();
  test_frame_message();
  test_frame_event();
  test_event_name_ok();
  test_parser();
  test_round_trip();
  return check_done();
}
