# Minimal image for now: the CLI with the pinned stack. The job-server work splits it
# into an API image without torch and a CUDA worker image.
FROM python:3.11-slim
WORKDIR /srv/tftsweep
COPY pyproject.toml requirements.lock README.md ./
COPY core core
COPY app app
COPY worker worker
RUN pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir -c requirements.lock .
ENV TFTSWEEP_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["tftsweep"]
CMD ["--help"]
