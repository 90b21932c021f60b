# bge-rag HTTP server (`bge-rag serve`), CPU image.
#
# Not built or tested in this project's CI (it has no network); kept deliberately simple.
#   docker build -t bge-rag-server .
#   docker run --rm -p 8000:8000 -e BGE_RAG_API_KEY=change-me \
#       -v "$HOME/.cache/huggingface:/home/bge/.cache/huggingface" \
#       bge-rag-server --model BAAI/bge-m3 --reranker BAAI/bge-reranker-v2-m3
# Models download into the mounted Hugging Face cache on first start (or mount a folder and pass its path).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# torch's CPU build, pinned as ./dev.sh pins it. For a GPU image pass e.g.
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 (and run with --gpus all).
ARG TORCH="torch==2.13.0"
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_INDEX" "$TORCH"

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bge_core ./bge_core
COPY bge_rag ./bge_rag
COPY integrations ./integrations
RUN pip install ".[server]" && rm -rf /src

RUN useradd --create-home --uid 1000 bge
USER bge
WORKDIR /home/bge
ENV HF_HOME=/home/bge/.cache/huggingface

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
# 0.0.0.0 inside the container; publish the port only where it should be reachable, and set BGE_RAG_API_KEY.
ENTRYPOINT ["bge-rag", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--model", "BAAI/bge-small-en-v1.5"]
