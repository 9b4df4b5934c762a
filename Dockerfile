# Two images from one file:
#   api:    FastAPI + the database layer, no torch (small, starts fast)
#   worker: the same code plus the training stack; PyPI's torch wheel for Linux carries
#           its CUDA libraries, so the worker uses the GPU on hosts with the NVIDIA runtime.
# A normal install: migrations and the shipped configs are package data, found through
# importlib.resources, so the code runs from site-packages (the build context stays behind).

FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TFTSWEEP_DATA_DIR=/data
WORKDIR /srv/tftsweep
COPY pyproject.toml requirements.lock README.md ./
COPY core core
COPY app app
COPY worker worker
COPY migrations migrations
RUN useradd --create-home --uid 1000 tftsweep && mkdir -p /data && chown tftsweep /data
VOLUME /data

FROM base AS api
RUN pip install -c requirements.lock . && rm -rf /srv/tftsweep/build
USER tftsweep
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["uvicorn", "app.api.main:app", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS worker
RUN pip install torch==2.13.0 && pip install -c requirements.lock '.[ml]' && rm -rf /srv/tftsweep/build
USER tftsweep
WORKDIR /data
CMD ["tftsweep", "worker", "--queues", "gpu,cpu", "--gpus", "0"]
