/* JSON error bodies and HTTP reason phrases. */
#include "jsonutil.h"

#include <stdio.h>
#include <string.h>

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

struct json_object *json_error(const char *error, const char *message)
{
  struct json_object *o = json_object_new_object();
  json_object_object_add(o, "error", json_object_new_string(error));
  json_object_object_add(o, "message", json_object_new_string(message));
  return o;
}
