/* The wasm ABI of the browser client. tinysse.js instantiates the module once
 * per connection, so one static struct tsc is the whole state; JS writes
 * UTF-8 text into the input buffer (at __heap_base, grown on demand) and gets
 * back action masks, small codes and offsets into the exported memory. */
#include "tinysse_client.h"

/* The exports are the ABI: JS is their only caller, so no header declares them. */
#pragma clang diagnostic ignored "-Wmissing-prototypes"
#define EXPORT(name) __attribute__((export_name(name)))

extern unsigned char __heap_base;
static struct tsc client;

static uint32_t at(const void *p)
{
  return (uint32_t)(__UINTPTR_TYPE__)p;
}

static uint32_t capacity(void)
{
  return (uint32_t)(__builtin_wasm_memory_size(0) * 65536u) - at(&__heap_base);
}

/* The input buffer's offset, with room for n bytes; 0 when memory cannot grow. */
EXPORT("input") uint32_t input(uint32_t n)
{
  uint32_t have = capacity();
  if (n > have && __builtin_wasm_memory_grow(0, (uint32_t)(((uint64_t)n - have + 65535) / 65536)) ==
                      (__SIZE_TYPE__)-1)
    return 0;
  return at(&__heap_base);
}

static const char *text(uint32_t n)
{
  return n <= capacity() ? (const char *)&__heap_base : 0;
}

EXPORT("init") void init(uint32_t retry_ms, uint32_t max_delay_ms, uint32_t timeout_ms, uint32_t seed)
{
  tsc_init(&client, retry_ms, max_delay_ms, timeout_ms, seed);
}

EXPORT("start") uint32_t start(void) { return tsc_on_start(&client); }
EXPORT("token") uint32_t token(int ok) { return tsc_on_token(&client, ok); }
EXPORT("opened") uint32_t opened(void) { return tsc_on_open(&client); }
EXPORT("failed") uint32_t failed(int ready_state) { return tsc_on_error(&client, ready_state); }
EXPORT("message") uint32_t message(uint32_t n) { return tsc_on_message(&client, text(n), n); }
EXPORT("reset") uint32_t reset(uint32_t n) { return tsc_on_reset(&client, text(n), n); }
EXPORT("auth") uint32_t auth(void) { return tsc_on_auth(&client); }
EXPORT("busy") uint32_t busy(uint32_t retry_ms) { return tsc_on_busy(&client, retry_ms); }
EXPORT("timer") uint32_t timer(void) { return tsc_on_timer(&client); }
EXPORT("close") uint32_t close(void) { return tsc_on_close(&client); }
EXPORT("follow") uint32_t follow(void) { return tsc_on_follow(&client); }
EXPORT("lead") uint32_t lead(void) { return tsc_on_lead(&client); }

EXPORT("state") uint32_t state(void) { return tsc_state(&client); }
EXPORT("delay") uint32_t delay(void) { return tsc_delay(&client); }
EXPORT("error") uint32_t error(void) { return tsc_error_type(&client); }
EXPORT("why") uint32_t why(void) { return (uint32_t)tsc_error_why(&client); }
EXPORT("id_at") uint32_t id_at(void) { return at(&__heap_base) + client.env.id_off; }
EXPORT("id_len") uint32_t id_len(void) { return client.env.id_len; }
EXPORT("data_at") uint32_t data_at(void) { return at(&__heap_base) + client.env.data_off; }
EXPORT("data_len") uint32_t data_len(void) { return client.env.data_len; }
EXPORT("handler") uint32_t handler(void) { return client.env.handler_id; }

EXPORT("last_at") uint32_t last_at(void)
{
  uint32_t n;
  return at(tsc_last_id(&client, &n));
}

EXPORT("last_len") uint32_t last_len(void)
{
  uint32_t n;
  tsc_last_id(&client, &n);
  return n;
}
