# The pipeline in a CUDA TensorFlow container. `docker run --gpus all -v "$PWD":/workspace IMAGE`
# runs `dvc repro` on the mounted checkout; `docker run IMAGE pytest` runs the tests of the copy
# baked in. The last stage is the image users get; `--target smoke` adds the smoke run (docs/container.md).

# The official image of the TensorFlow that requirements.txt pins (Ubuntu 22.04, Python 3.11).
# `make image-test` passes a local Debian stand-in instead: everything below works on either.
ARG BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu
FROM ${BASE_IMAGE} AS production

# git: DVC needs the repository. The data set is baked in from Debian/Ubuntu's package (Debian
# uploaded it in 2020: Ubuntu 20.10 on); with `--build-arg FASHION_MNIST_PACKAGE=` on a base whose apt lacks it,
# the prepare stage downloads it at run time into $KERAS_HOME instead.
ARG FASHION_MNIST_PACKAGE=dataset-fashion-mnist
# DL3008: apt versions differ between the bases this file supports (Ubuntu's, Debian's), and the
# data set's content is pinned where it matters, by SHA-256 in src/trainstyles/data.py.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        git ${FASHION_MNIST_PACKAGE} \
    && rm -rf /var/lib/apt/lists/*

# The stages run `python`: the official image has it, a plain Debian or Ubuntu base only python3.
RUN command -v python >/dev/null || ln -s "$(command -v python3)" /usr/local/bin/python

# Into the image's own Python, where the official image keeps TensorFlow and its CUDA setup (a
# venv would hide them): as root, on a Python that Debian marks externally managed (PEP 668).
# Set as variables, which an older pip (Ubuntu 22.04's) ignores, where options would fail it.
COPY requirements.txt /tmp/requirements.txt
RUN PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore \
    python -m pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Any uid may run the container (`--user "$(id -u):$(id -g)"`, so that outputs on the bind mount
# belong to the caller), with no home directory and maybe not owning the mount: git must trust
# the mounted repository, `dvc exp` needs an identity, Keras and DVC need caches they can write,
# and DVC asks for a user name (getpass), which it would look up in /etc/passwd and not find.
RUN git config --system --add safe.directory /workspace \
    && git config --system user.name "trainstyles container" \
    && git config --system user.email "container@trainstyles.invalid"
ENV KERAS_HOME=/tmp/keras \
    DVC_SITE_CACHE_DIR=/tmp/dvc-site-cache \
    USER=trainstyles \
    PYTHONPATH=/workspace/src

# A non-root default user for `docker run IMAGE pytest`, owning the baked copy it tests; the
# usual uid of a host's first user, so that a run without --user writes files it can edit too.
RUN useradd --create-home --uid 1000 trainstyles
WORKDIR /workspace
COPY --chown=1000:1000 . .
USER 1000
# The tests copy the checkout by `git ls-files`, and .dockerignore leaves the host's .git out.
RUN git init -q && git add -A
# `docker run IMAGE pytest` leaves out the browser tests, as well as the acceptance run: the
# image has no Chromium and no Vega for the plots page (`make test` on a host runs them).
ENV PYTEST_ADDOPTS="-m 'not real and not browser'"

CMD ["dvc", "repro"]


# The smoke run, built only on request (`--target smoke`, `make image-test`), as a uid with no
# account: the pipeline as a user runs it, on small params in a fresh git repository (the
# end-to-end test's own run and assertions), then the fast tests (`make test`'s tier, a worker
# per core).
FROM production AS smoke
USER 4242:4242
RUN pytest -p no:cacheprovider \
        tests/test_pipeline.py::test_every_declared_output_exists \
        tests/test_pipeline.py::test_pipeline_is_up_to_date_after_repro \
    && pytest -p no:cacheprovider -m "not slow and not real" -n auto


# The default target: the production stage, without the smoke run's files.
FROM production
