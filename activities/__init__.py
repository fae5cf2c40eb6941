"""Activities: ``BaseActivity`` and the activities that ship with Libero Flow.

User activities live in this package or in the packages named by
``FLOW_ACTIVITY_PACKAGES``; :mod:`activities.discovery` finds them.
"""

from activities.base import ActivityCancelled, BaseActivity

__all__ = ["ActivityCancelled", "BaseActivity"]
