# One image for the API and the training jobs (CPU build of torch).
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY gendetect ./gendetect
COPY training ./training
COPY serving ./serving
RUN pip install ".[bench]" psycopg2-binary
RUN useradd --create-home gendetect
USER gendetect
EXPOSE 8000
CMD ["gendetect", "serve", "--host", "0.0.0.0", "--port", "8000"]
