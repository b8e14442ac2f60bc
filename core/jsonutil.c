/* JSON replies. */
#include "jsonutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <json-c/json.h>

const char *http_reason(int code)
{
  switch (code) {
  case 200: return "OK";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Payload Too Large";
  case 415: return "Unsupported Media Type";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

void reply_json(struct evhttp_request *req, int code, struct json_object *body)
{
  struct evbuffer *out = evbuffer_new();
  const char *text = body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN |
                                                                     JSON_C_TO_STRING_NOSLASHESCAPE)
                          : "{}";
  evbuffer_add(out, text, strlen(text));
  evbuffer_add(out, "\n", 1);
  struct evkeyvalq *h = evhttp_request_get_output_headers(req);
  evhttp_add_header(h, "Content-Type", "application/json");
  if (!evhttp_find_header(h, "Cache-Control"))
    evhttp_add_header(h, "Cache-Control", "no-store");
  evhttp_send_reply(req, code, http_reason(code), out);
  evbuffer_free(out);
  json_object_put(body);
}

struct json_object *json_error(const char *error, const char *message)
{
  struct json_object *o = json_object_new_object();
  json_object_object_add(o, "error", json_object_new_string(error));
  json_object_object_add(o, "message", json_object_new_string(message));
  return o;
}

static void send_error(struct evhttp_request *req, int code, const char *error, const char *field,
                       const char *fmt, va_list ap)
{
  char msg[512];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  struct json_object *o = json_error(error, msg);
  if (field)
    json_object_object_add(o, "field", json_object_new_string(field));
  reply_json(req, code, o);
}

void reply_error(struct evhttp_request *req, int code, const char *error, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  send_error(req, code, error, NULL, fmt, ap);
  va_end(ap);
}

void reply_field_error(struct evhttp_request *req, int code, const char *field, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  send_error(req, code, "bad_request", field, fmt, ap);
  va_end(ap);
}
