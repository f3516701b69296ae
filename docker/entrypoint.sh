#!/bin/sh
# wattserve's container entrypoint (POSIX sh), run from the image's WORKDIR (/app).
#
#   docker run IMAGE            serve (the default CMD is `serve`)
#   docker run IMAGE serve      serve: what SageMaker runs
#   docker run IMAGE sh         anything else runs as given (a shell, `node -e …`), for debugging
#
# Models: MODEL_REPOSITORY wins when set. Else, when SageMaker's model directory (/opt/ml/model;
# SAGEMAKER_MODEL_DIR moves it, for tests) exists and holds anything, or cannot be listed, it is
# the repository: an unreadable one then stops start-up with the server's message rather than
# quietly serving the example models. Else the server's default, ./models: the models shipped in
# the image (or the compose stack's volume mounted there). In SageMaker multi-model mode
# (SAGEMAKER_MULTI_MODEL=true) none of this: the server's own default there is /opt/ml/models.
#
# `exec` replaces this shell, so node is PID 1 and receives SIGTERM itself (the server drains and
# exits on it).
set -eu

if [ -z "${MODEL_REPOSITORY:-}" ] && [ "${SAGEMAKER_MULTI_MODEL:-}" != true ]; then
  sagemaker_model_dir=${SAGEMAKER_MODEL_DIR:-/opt/ml/model}
  if [ -d "$sagemaker_model_dir" ]; then
    if ! listing=$(ls -A "$sagemaker_model_dir" 2>/dev/null) || [ -n "$listing" ]; then
      MODEL_REPOSITORY=$sagemaker_model_dir
      export MODEL_REPOSITORY
    fi
  fi
fi

if [ "$#" -eq 0 ] || { [ "$#" -eq 1 ] && [ "$1" = serve ]; }; then
  exec node dist/server.js
fi
if [ "$1" = serve ]; then
  echo "wattserve: 'serve' takes no arguments; configure the server with environment variables" >&2
  exit 64
fi
exec "$@"
