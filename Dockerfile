# syntax=docker/dockerfile:1
# The images of the compose mesh (compose.yaml, DESIGN §7). Two targets:
#   runtime  every cloudnet process (`python -m command_api`, ..., `cloudnet migrate`): the venv
#            built by uv from uv.lock, on a slim Python, as an unprivileged user;
#   gateway  nginx supervised by consul-template, which renders its upstreams from Consul.
# Build: docker build --target runtime -t cloudnet/app:local .   (compose.yaml does both)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The builder's Python: the same image by default; the local-image mesh
# (infra/compose/local-images.yaml) gives a runtime without pip and a builder with it.
ARG BUILDER_IMAGE=${PYTHON_IMAGE}

# --- builder: the venv, from the lock only (no compilers needed: every dependency is a wheel)
FROM ${BUILDER_IMAGE} AS builder
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, so this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY events events
COPY command_api command_api
COPY query_api query_api
COPY projectors projectors
COPY infra infra
# The project itself as a wheel into the venv: the runtime image needs no source tree.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable
# The gateway's nginx.conf template, from the same nginx template the local launcher renders.
RUN /app/.venv/bin/python -m infra.compose.gateway /app/gateway/nginx.conf.ctmpl

# --- runtime: the venv on the same slim Python (its interpreter path is the builder's)
FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin cloudnet
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER cloudnet:cloudnet
EXPOSE 8000
CMD ["cloudnet", "--help"]

# --- gateway: nginx with consul-template as its supervisor (exec mode), both unprivileged
FROM hashicorp/consul-template:0.39 AS consul-template

FROM nginx:1.27-alpine AS gateway
COPY --from=consul-template /bin/consul-template /usr/local/bin/consul-template
COPY --from=builder /app/gateway/nginx.conf.ctmpl /etc/cloudnet/nginx.conf.ctmpl
COPY infra/compose/gateway.hcl /etc/cloudnet/consul-template.hcl
RUN mkdir -p /var/cache/nginx/cloudnet/tmp && chown -R nginx:nginx /var/cache/nginx/cloudnet
USER nginx
EXPOSE 8080
ENTRYPOINT ["consul-template", "-config=/etc/cloudnet/consul-template.hcl"]
