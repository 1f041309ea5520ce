# The compose mesh's Consul: one server that is its own cluster, the agent every cloudnet process
# registers with (CONSUL_HTTP_ADDR=consul:8500) and runs the processes' /health checks.
# Reference: https://developer.hashicorp.com/consul/docs/reference/agent/configuration-file
datacenter       = "cloudnet"
server           = true
bootstrap_expect = 1
client_addr      = "0.0.0.0"
log_level        = "INFO"

ui_config {
  enabled = true
}

# Services register themselves over the HTTP API; nothing may run scripts as checks.
enable_script_checks       = false
enable_local_script_checks = false

# /v1/agent/metrics?format=prometheus, scraped by Prometheus (job consul).
telemetry {
  prometheus_retention_time = "60s"
  disable_hostname          = true
}
