"""Start a workflow, answer its wait and take its result, with the Python client.

Against a Libero Flow that runs the examples (``FLOW_DEFINITIONS_DIR=examples/workflows
flow up``), run it as ``python examples/python_client.py 42``; it reads the API's URL
and token from FLOW_API_URL and FLOW_API_TOKEN, as the ``flow`` command does.
"""

import sys

from flow.client import Client, WorkflowFailed

order = sys.argv[1] if len(sys.argv) > 1 else "42"
client = Client()

# The key makes the start safe to repeat: a second start of order 42 returns the first workflow.
workflow = client.start("ApprovalExample", {"order": order}, idempotency_key=f"approve-order-{order}")
client.signal(workflow.id, "approved", {"choice": "approve"})
try:
    output = client.result(workflow.id, timeout_s=60)
except WorkflowFailed as e:
    sys.exit(f"workflow {e.workflow_id} failed: {e.error}")
print(f"order {order}: {output['approval']['choice']}d, shipped: {'ship' in output}")
