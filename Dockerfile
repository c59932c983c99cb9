# One image for every Tally service; docker-compose.yml picks the module to run.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY stack ./stack
COPY config ./config
RUN pip install --no-cache-dir .
ENV TALLY_HOST=0.0.0.0
