# kgqa's HTTP service on the CPU. Build: `make docker-smoke` (or see README, "Deploy with Docker").
# The model (models/kgqa-default) is baked in; the KB index is mounted at /srv/kgqa/index (or set KGQA_INDEX).
# A new KB without a restart: rebuild the index on the host, then `docker kill -s HUP <container>` (run with --init);
# mount the directory holding the index for that (README, "Updating the KB of a running service").
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# LightGBM (the learned ranker) links the system's OpenMP runtime; pylcs is a source package (C++): g++ and the Python
# headers (where the image's Python is Debian's own) build it here, and only the built venv goes into the image
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 g++ python3-dev && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_COMPILE=1
COPY pyproject.toml README.md /tmp/src/
COPY kgqa /tmp/src/kgqa
# The model runs on ONNX Runtime from the graphs in the model directory: no torch, no transformers in the image.
# Bytecode only for what serving imports (written by importing it; all of it was 88 MB), no pip or setuptools and no
# test suites in the venv: the image installs nothing once built. Nor the Hugging Face Hub client that tokenizers
# requires for its downloads (22 MB): the tokenizer is read from the model directory, and the import check below
# runs without it.
RUN pip install /tmp/src \
    && python -m pip uninstall --yes --quiet huggingface-hub hf-xet fsspec filelock setuptools pip \
    && find /opt/venv/lib/python3.11/site-packages/numpy /opt/venv/lib/python3.11/site-packages/scipy \
        -depth -type d -name tests -exec rm -rf {} + \
    && python -c "import sys, onnxruntime, lightgbm, kgqa.service.app, kgqa.model.runtime.onnx_layers; \
assert not {'torch', 'transformers'} & set(sys.modules)" \
    && ! python -c "import torch" 2>/dev/null && ! python -c "import transformers" 2>/dev/null
COPY models/kgqa-default /srv/kgqa/models/kgqa-default
RUN chmod -R a+rX /srv/kgqa/models/kgqa-default

FROM ${PYTHON_IMAGE}
# LightGBM (the learned ranker) links the system's OpenMP runtime; apt's caches go (87 MB)
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin kgqa
COPY --from=build /opt/venv /opt/venv
COPY --from=build /srv/kgqa/models/kgqa-default /srv/kgqa/models/kgqa-default
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    KGQA_MODEL=/srv/kgqa/models/kgqa-default \
    KGQA_INDEX=/srv/kgqa/index \
    KGQA_HOST=0.0.0.0 \
    KGQA_PORT=8000
USER kgqa
WORKDIR /home/kgqa
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["kgqa", "serve"]
