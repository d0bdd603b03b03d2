# One image for the four services and the operator; the command selects which:
#   orderflow run order|inventory|billing|shipping      orderflow operator --all-namespaces
# Builder: a virtualenv with the dependencies (one cached layer, rebuilt only when pyproject.toml changes), then
# the project itself. Final: the same slim Python, the virtualenv, a non-root user, nothing else.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/orderflow
COPY pyproject.toml ./
# The runtime dependencies (and the operator's and tracing's), read from pyproject.toml: every dependency ships a wheel, so no
# compiler is needed. Pinned by the ranges in pyproject.toml, which hadolint cannot see through a file.
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["operator"] + p["optional-dependencies"]["tracing"]))' > requirements.txt \
    && /opt/orderflow/bin/pip install --no-cache-dir --only-binary=:all: -r requirements.txt
COPY README.md ./
COPY services/orderflow ./services/orderflow
COPY operator ./operator
RUN /opt/orderflow/bin/pip install --no-cache-dir --no-deps . \
    && /opt/orderflow/bin/python -m compileall -q /opt/orderflow/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="orderflow" \
      org.opencontainers.image.description="OrderFlow services (order, inventory, billing, shipping) and operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/orderflow /opt/orderflow
ENV PATH=/opt/orderflow/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORDERFLOW_HTTP_HOST=0.0.0.0 \
    ORDERFLOW_DATA_DIR=/tmp/orderflow
# A numeric non-root user, so the kubelet can verify runAsNonRoot; no home, no shell, owns nothing in the image.
USER 10001:10001
# The working directory is on the read-only root: the kernel's default core_pattern ("core") writes a crashing
# process's core into its working directory, and with /tmp (an emptyDir with a size limit) one native crash got
# the operator's Pod evicted on the first real cluster. Nothing is written relative to it.
WORKDIR /
EXPOSE 8080
ENTRYPOINT ["orderflow"]
CMD ["--help"]
