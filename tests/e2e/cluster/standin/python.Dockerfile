# LOCAL STAND-IN for python:3.11-slim-bookworm (the image our Dockerfile's PYTHON_IMAGE names), for the e2e suite
# only: a debootstrap of Debian bookworm with python3 and python3-venv (Python 3.11.2), imported as BASE. pip inside
# `docker build` trusts what pip on the host trusts (the host's CA bundle). Users pull the official image.
ARG BASE
FROM ${BASE}
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY pip.conf /etc/pip.conf
# The official image answers to `python` too (our Dockerfile calls it so).
RUN ln -s python3 /usr/bin/python
ENV LANG=C.UTF-8
CMD ["python3"]
