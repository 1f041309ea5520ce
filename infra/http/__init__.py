"""What every cloudnet HTTP service shares: middleware, problem handlers, health and metrics."""
