"""depwatch: watch a pod's Redis and OpenTelemetry Collector from inside the pod."""

__version__ = "0.1.0"
