# consul-template in the gateway container (Dockerfile, target gateway): renders nginx.conf from
# the instances whose Consul checks pass and supervises nginx (exec mode), reloading it with
# SIGHUP when the upstreams change; nginx keeps its old config should a render not load.
# Reference: https://github.com/hashicorp/consul-template/blob/main/docs/configuration.md
kill_signal = "SIGTERM"  # what `docker stop` sends
log_level   = "info"

consul {
  address = "consul:8500"

  # Consul may start later or restart: keep trying, never exit.
  retry {
    enabled     = true
    attempts    = 0
    backoff     = "250ms"
    max_backoff = "5s"
  }
}

template {
  source      = "/etc/cloudnet/nginx.conf.ctmpl"
  destination = "/var/cache/nginx/cloudnet/nginx.conf"

  # Instances that come and go within a second make one reload, not several.
  wait {
    min = "1s"
    max = "5s"
  }
}

exec {
  command       = "nginx -e stderr -c /var/cache/nginx/cloudnet/nginx.conf"
  reload_signal = "SIGHUP"
  kill_signal   = "SIGQUIT"  # graceful: finish the requests in flight
  kill_timeout  = "15s"
}
