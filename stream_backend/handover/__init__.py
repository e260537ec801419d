"""Stream -> primary: a webhook body as Stream signs it (body.py), which events go to the primary
(handover.py), the queue that keeps them until they are delivered (queue.py, queue_redis.py),
and their delivery (delivery.py). No Flask here: the webhook route in app.py verifies the
request and calls it."""
