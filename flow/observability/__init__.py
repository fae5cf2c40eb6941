"""What a process tells about itself: OpenTelemetry spans (:mod:`.tracing`) and
Prometheus metrics (:mod:`.metrics`)."""
