/* Publishing: rules, then the broker or Redis (see publisher.h). */
#include "publisher.h"

#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "cluster.h"
#include "shared.h"
#include "idem.h"
#include "validate.h"

int publisher_send(struct gateway *gw, struct redis_link *link, const struct publish_req *rq,
                   struct publish_result *res)
{
  res->replayed = 0;
  res->nids = 0;
  res->field[0] = res->message[0] = '\0';
  for (size_t i = 0; i < rq->n; i++) {
    char field[24];
    if (validate_item(&rq->items[i], rq->max_data, field, sizeof(field), res->message,
                      sizeof(res->message))) {
      if (rq->n > 1 || rq->is_array)
        snprintf(res->field, sizeof(res->field), "[%zu].%s", i, field);
      else
        snprintf(res->field, sizeof(res->field), "%s", field);
      return 400;
    }
  }
  unsigned char digest[IDEM_DIGEST_LEN];
  if (rq->key)
    broker_digest(rq->items, rq->n, rq->is_array, digest);
  if (gw->cluster) {
    char hex[2 * IDEM_DIGEST_LEN + 1];
    for (int i = 0; rq->key && i < IDEM_DIGEST_LEN; i++)
      snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    struct cluster_once once = {rq->key, hex};
    if (cluster_publish(gw->cluster, link, rq->items, rq->n, rq->key ? &once : NULL, rq->done,
                        rq->arg, res->message, sizeof(res->message)) != 0)
      return 503;
    return PUBLISH_PENDING;
  }
  enum idem_result r = IDEM_NEW;
  if (rq->key)
    r = broker_publish_once(gw, rq->items, rq->n, rq->key, strlen(rq->key), digest, res->ids,
                            &res->nids);
  else
    res->nids = broker_publish(gw, rq->items, rq->n, res->ids);
  if (r == IDEM_CONFLICT) {
    snprintf(res->message, sizeof(res->message),
             "this Idempotency-Key was used within --idempotency-window for a different "
             "publish; nothing was published");
    return 409;
  }
  res->replayed = r == IDEM_REPEAT;
  if (res->nids < rq->n) {
    snprintf(res->message, sizeof(res->message),
             "out of memory: only the listed ids were published");
    return 500;
  }
  return 200;
}
