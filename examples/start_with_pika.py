"""Start a workflow with the seed's plain JSON message, published with pika.

``python examples/start_with_pika.py DummyWorkflow '{"x": 1}'``
"""

import json
import sys

import pika

name = sys.argv[1] if len(sys.argv) > 1 else "DummyWorkflow"
input_data = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}

connection = pika.BlockingConnection(pika.ConnectionParameters("localhost"))
channel = connection.channel()
channel.basic_publish(
    exchange="start_workflow",
    routing_key="workflow_starter",
    body=json.dumps({"name": name, "input_data": input_data}),
    properties=pika.BasicProperties(delivery_mode=2),  # persistent
)
connection.close()
print(f"published a start of {name}")
