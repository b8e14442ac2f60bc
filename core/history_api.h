/* GET /history?channel=NAME[&since=ID][&limit=N]: the messages the replay
 * history still holds for one channel, oldest first, as JSON, and whether
 * older ones were evicted. For publishers (the publish key or
 * authorize_publish) and for stream tokens whose channels include NAME. */
#ifndef TINYSSE_HISTORY_API_H
#define TINYSSE_HISTORY_API_H

struct request;

#define HISTORY_API_DEFAULT_LIMIT 100
#define HISTORY_API_MAX_LIMIT 1000

void history_api_request(struct request *r);

#endif
