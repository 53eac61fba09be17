# One image for the API and the training jobs (CPU build of torch).
FROM python:3.11-slim
WORKDIR /app
# The code version runs and versions record (training.lineage); git is not in
# the image: pass it at build time, e.g. --build-arg GENDETECT_CODE_VERSION=$(git describe --always --dirty).
ARG GENDETECT_CODE_VERSION=unknown
ENV PIP_NO_CACHE_DIR=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 \
    GENDETECT_CODE_VERSION=${GENDETECT_CODE_VERSION} GENDETECT_HOME=/home/gendetect/.gendetect
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md LICENSE ./
COPY gendetect ./gendetect
COPY training ./training
COPY serving ./serving
COPY scoring ./scoring
# The postgres extra: psycopg 3, the driver the stores use (SQLAlchemy URL postgresql://).
RUN pip install ".[postgres]"
RUN useradd --create-home gendetect
USER gendetect
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=6 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["gendetect", "serve", "--host", "0.0.0.0", "--port", "8000"]
