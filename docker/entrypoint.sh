#!/bin/sh
# `oneai run` migrates the embedded SQLite file itself but only checks a PostgreSQL
# database; migrating here first means a deployment needs no manual step.
# Other commands pass through: `docker compose run --rm bot admin stats`.
set -eu
if [ "${1:-}" = "run" ]; then
    oneai migrate
fi
exec oneai "$@"
