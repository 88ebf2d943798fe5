# datafactory: the same install as `make` (pinned set from constraints.txt, torch's CPU wheel), demo by default.
FROM python:3.11-slim-bookworm

RUN apt-get update && apt-get install -y --no-install-recommends make build-essential postgresql \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml constraints.txt overrides.txt Makefile README.md ./
COPY factory ./factory
COPY filters ./filters
COPY pipelines ./pipelines
COPY mixtures ./mixtures
COPY flows ./flows
COPY trainer ./trainer
COPY exports ./exports
COPY app ./app

# Outside the build machine torch's CPU wheel comes from PyTorch's CPU index, not the multi-GB CUDA build.
RUN make install TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"

ENV PATH="/app/.venv/bin:${PATH}" \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
CMD ["factory", "demo", "--out", "/data/demo-build"]
