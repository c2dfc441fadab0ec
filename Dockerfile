# One image for the gateway and the worker (CPU). The GPU worker uses the same
# code with a CUDA build of torch: see docker-compose.yml, service worker-gpu.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SHOPBOT_MODELS_DIR=/app/models
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir torch==2.13.0 --index-url ${TORCH_INDEX}
COPY pyproject.toml README.md ./
COPY nlu nlu
COPY shopbot shopbot
COPY admin admin
COPY channels channels
COPY gateway gateway
COPY workers workers
COPY dialogue dialogue
COPY handoff handoff
RUN pip install --no-cache-dir .
EXPOSE 8080
CMD ["python", "-m", "gateway", "--host", "0.0.0.0", "--port", "8080"]
