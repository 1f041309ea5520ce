"""What the containerised mesh (compose.yaml, Dockerfile) needs beyond the images: configs for
Consul, consul-template, Prometheus, the OpenTelemetry collector, PostgreSQL replication and
RabbitMQ, and the gateway's nginx.conf, made from the local launcher's template (gateway.py)."""
