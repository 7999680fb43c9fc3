#!/bin/sh
# envlock image entrypoint: check that this container still reproduces the golden baked into
# the image, then run the user's command. Drift fails fast (the command never runs) unless
# ENVLOCK_ON_DRIFT=warn, which only warns. `envlock verify` itself is run directly (it *is*
# the check), so `docker run IMAGE envlock verify [--json]` verifies exactly once; so is
# `envlock watch`, which must start (and report drift) even on a node that drifted.
set -eu

golden="${ENVLOCK_GOLDEN:-/etc/envlock/golden.json}"
[ "$#" -gt 0 ] || set -- envlock verify

if [ "$1" = "envlock" ] && { [ "${2:-}" = "verify" ] || [ "${2:-}" = "watch" ]; }; then
    exec "$@"
fi

status=0
envlock verify "$golden" >&2 || status=$?
case "$status" in
    0) ;;
    1)
        if [ "${ENVLOCK_ON_DRIFT:-fail}" = "warn" ]; then
            echo "envlock: warning: this container does not reproduce $golden; running anyway (ENVLOCK_ON_DRIFT=warn)" >&2
        else
            echo "envlock: error: this container does not reproduce $golden (see above); set ENVLOCK_ON_DRIFT=warn to run anyway" >&2
            exit 1
        fi
        ;;
    *)
        echo "envlock: error: could not verify $golden (envlock verify exit $status)" >&2
        exit "$status"
        ;;
esac
exec "$@"
