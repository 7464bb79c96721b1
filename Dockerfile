# The pipeline in a CUDA TensorFlow container. `docker run --gpus all -v "$PWD":/workspace IMAGE`
# runs `dvc repro` on the mounted checkout; `docker run IMAGE pytest` runs the tests of the copy
# baked in. The last stage is the image users get; `--target smoke` adds the smoke run (docs/container.md).

# A plain Debian 12 (bookworm, Python 3.11). TensorFlow and CUDA's user space (NVIDIA's wheels,
# requirements-cuda.txt) come from PyPI at pinned versions; the GPU host brings only its driver,
# through the NVIDIA Container Toolkit (`--gpus all`). `make image-test` builds this file on a
# local debootstrap of the same release: everything below is what ships.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE} AS production

# git: DVC needs the repository. The data set is baked in from Debian's package; with
# `--build-arg FASHION_MNIST_PACKAGE=` the prepare stage downloads it at run time into $KERAS_HOME.
ARG FASHION_MNIST_PACKAGE=dataset-fashion-mnist
# DL3008: the base is Debian 12 and its security updates; the data set's content is pinned where
# it matters, by SHA-256 in src/trainstyles/pipeline/data.py.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates git ${FASHION_MNIST_PACKAGE} \
    && rm -rf /var/lib/apt/lists/*

# A virtual environment, as Debian's Python is externally managed (PEP 668); first on PATH, so
# that the stages' `python` is its. The CUDA layer is a layer of its own, on top of the rest.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY requirements-cuda.txt /tmp/requirements-cuda.txt
RUN pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements-cuda.txt \
    && rm /tmp/requirements-cuda.txt

# Any uid may run the container (`--user "$(id -u):$(id -g)"`, so that outputs on the bind mount
# belong to the caller), with no home directory and maybe not owning the mount: git must trust
# the mounted repository, `dvc exp` needs an identity, Keras, DVC and the CUDA driver (the GPU
# code it compiles from XLA's and TensorFlow's PTX) need caches they can write, and DVC asks for
# a user name (getpass), which it would look up in /etc/passwd and not find.
RUN git config --system --add safe.directory /workspace \
    && git config --system user.name "trainstyles container" \
    && git config --system user.email "container@trainstyles.invalid"
# The CUDA cache under /tmp is lost with `docker run --rm`: the stages and gpu-check keep the
# compiled code in the mounted workspace instead (.cache/cuda), and fall back to this path, which
# src/trainstyles/pipeline/gpu.py knows as the image's, only where the container cannot write there.
ENV KERAS_HOME=/tmp/keras \
    DVC_SITE_CACHE_DIR=/tmp/dvc-site-cache \
    CUDA_CACHE_PATH=/tmp/cuda-cache \
    USER=trainstyles \
    PYTHONPATH=/workspace/src

# A non-root default user for `docker run IMAGE pytest`, owning the baked copy it tests; the
# usual uid of a host's first user, so that a run without --user writes files it can edit too.
RUN useradd --create-home --uid 1000 trainstyles
WORKDIR /workspace
COPY --chown=1000:1000 . .
USER 1000
# The tests copy the checkout by `git ls-files` and read the committed run from HEAD: the
# checkout's own history where it came along, else a commit of the files the image was built from.
RUN git rev-parse -q --verify HEAD >/dev/null 2>&1 \
    || { rm -rf .git && git init -q && git add -A \
        && git commit -q -m "the files this image was built from"; }

CMD ["dvc", "repro"]


# The smoke run, built only on request (`--target smoke`, `make image-test`), as a uid with no
# account: `make gpu-check`'s check (every CUDA library loads; no driver here), the pipeline as a
# user runs it, on small params in a fresh git repository (the end-to-end test's own run and
# assertions), then the fast tests (`make test`'s tier, a worker per core).
FROM production AS smoke
USER 4242:4242
RUN python -m trainstyles.tools.gpu_check \
    && pytest -p no:cacheprovider -m slow \
        tests/test_pipeline.py::test_every_declared_output_exists \
        tests/test_pipeline.py::test_pipeline_is_up_to_date_after_repro \
    && pytest -p no:cacheprovider -n auto


# The default target: the production stage, without the smoke run's files.
FROM production
