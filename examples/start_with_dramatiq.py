"""Start a workflow with a Dramatiq message, from any Python process.

Needs only ``dramatiq[rabbitmq]``: it neither imports Libero Flow nor declares its
actors. Run it as ``python examples/start_with_dramatiq.py DummyWorkflow '{"x": 1}'``.
"""

import json
import os
import sys

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

broker = RabbitmqBroker(
    url=os.environ.get("FLOW_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/"), confirm_delivery=True
)
queue = os.environ.get("FLOW_QUEUE_PREFIX", "flow") + ".engine"

message = dramatiq.Message(
    queue_name=queue,
    actor_name="flow.start_workflow",
    args=(),
    kwargs={"name": sys.argv[1], "input_data": json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")},
    options={},
)
broker.declare_queue(queue)
broker.enqueue(message)
print(f"sent {message.message_id} to {queue}")
