/* JSON error bodies and HTTP reason phrases. */
#include "jsonutil.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "alloc.h"

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

struct json_object *json_error(const char *error, const char *message)
{
  struct json_object *o = json_obj();
  json_object_object_add(o, "error", json_str(error));
  json_object_object_add(o, "message", json_str(message));
  return o;
}

static struct json_object *checked(struct json_object *o)
{
  if (!o)
    alloc_failed(0);
  return o;
}

struct json_object *json_obj(void) { return checked(json_object_new_object()); }
struct json_object *json_arr(void) { return checked(json_object_new_array()); }
struct json_object *json_str(const char *s) { return checked(json_object_new_string(s)); }
struct json_object *json_i64(long long v) { return checked(json_object_new_int64(v)); }
struct json_object *json_dbl(double v) { return checked(json_object_new_double(v)); }

const char *json_text(struct json_object *o)
{
  const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                        JSON_C_TO_STRING_NOSLASHESCAPE);
  if (!t)
    alloc_failed(0);
  return t;
}
