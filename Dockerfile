# One image for every Tally service; docker-compose.yml picks the module to run.

# The Usage page's chart library (uPlot) from the npm registry, as `make ui-assets` fetches it, so
# the image serves the same page as a local stack. Strict: an image without its chart fails to build.
FROM node:20-slim AS ui-assets
WORKDIR /src
COPY stack/vendor_ui.sh ./stack/vendor_ui.sh
RUN TALLY_VENDOR_STRICT=1 TALLY_VENDOR_AXE=0 bash stack/vendor_ui.sh

FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY --from=ui-assets /src/services/reports/static/vendor ./services/reports/static/vendor
COPY stack ./stack
COPY config ./config
RUN pip install --no-cache-dir .
ENV TALLY_HOST=0.0.0.0
