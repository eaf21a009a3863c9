#!/bin/sh
# TEST STAND-IN (see Dockerfile.standins) for the official nginx image's entrypoint: render
# /etc/nginx/templates/*.template into /etc/nginx/conf.d/*.conf, substituting only variables
# the environment defines (nginx's own $variables stay), then run the command.
set -eu
if [ -d /etc/nginx/templates ]; then
  defined=$(env | cut -d= -f1 | sed 's/^/$/' | tr '\n' ' ')
  for template in /etc/nginx/templates/*.template; do
    [ -e "$template" ] || continue
    output="/etc/nginx/conf.d/$(basename "$template" .template)"
    envsubst "$defined" < "$template" > "$output"
  done
fi
exec "$@"
