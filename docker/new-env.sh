#!/bin/sh
# Print a production .env for DOMAIN with fresh random secrets: `docker/new-env.sh drawbench.example.org > .env`.
# It is .env.production.example with every CHANGE-ME filled in; read it before you start.
set -eu
domain="${1:?usage: docker/new-env.sh DOMAIN > .env   (DOMAIN: your host name, or localhost to try it out)}"
cd "$(dirname "$0")/.."
secret() { python3 -c "import secrets; print(secrets.token_urlsafe($1))"; }
sed -e "s|^DJANGO_SECRET_KEY=CHANGE-ME|DJANGO_SECRET_KEY=$(secret 50)|" \
    -e "s|^POSTGRES_PASSWORD=CHANGE-ME|POSTGRES_PASSWORD=$(secret 24)|" \
    -e "s|^REDIS_PASSWORD=CHANGE-ME|REDIS_PASSWORD=$(secret 24)|" \
    -e "s|^MINIO_ROOT_PASSWORD=CHANGE-ME|MINIO_ROOT_PASSWORD=$(secret 24)|" \
    -e "s|^DRAWBENCH_DOMAIN=.*|DRAWBENCH_DOMAIN=$domain|" \
    -e "s|^DJANGO_ALLOWED_HOSTS=.*|DJANGO_ALLOWED_HOSTS=$domain|" \
    .env.production.example |
  if [ "$domain" = localhost ]; then
    # Browsers would remember HSTS for localhost, and refuse plain http to every other local server for a year.
    sed -e "s|^DJANGO_SECURE_HSTS_SECONDS=.*|DJANGO_SECURE_HSTS_SECONDS=0|" \
        -e "s|^DJANGO_SECURE_HSTS_PRELOAD=.*|DJANGO_SECURE_HSTS_PRELOAD=0|"
  else
    cat
  fi
