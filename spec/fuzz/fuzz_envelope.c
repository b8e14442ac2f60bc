/* libFuzzer target: the browser client's envelope parser (wasm/, compiled
 * natively). Whatever it accepts must be a JSON object that json-c accepts
 * too, with offsets inside the input and a handler_id in 0..255; and any
 * input fed as a message to a connected client must leave it in a state. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "tinysse_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *s = (const char *)data;
  struct tsc_envelope e;
  if (size > 1 << 20)
    return 0;
  int rc = tsc_parse_envelope(s, (uint32_t)size, &e);
  if (rc >= 0) {
    assert(e.id_off + e.id_len <= size && e.data_off + e.data_len <= size);
    assert(e.handler_id <= 255);
    struct json_tokener *tok = json_tokener_new_ex(TSC_MAX_DEPTH + 1);
    struct json_object *o = json_tokener_parse_ex(tok, s, (int)size);
    assert(json_tokener_get_error(tok) == json_tokener_success);
    assert(json_object_is_type(o, json_type_object));
    json_object_put(o);
    json_tokener_free(tok);
  }
  struct tsc c;
  tsc_init(&c, 1000, 30000, 10000, (uint32_t)size);
  tsc_on_start(&c);
  tsc_on_token(&c, 1);
  tsc_on_open(&c);
  tsc_on_message(&c, s, (uint32_t)size);
  tsc_on_message(&c, s, (uint32_t)size);
  assert(tsc_state(&c) <= TSC_CLOSED);
  return 0;
}
