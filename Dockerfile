# besponsa-cds: CDS Hooks 2.0 service for inotuzumab ozogamicin (BESPONSA) dose modifications.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BESPONSA_DATABASE_URL=sqlite:////var/lib/besponsa-cds/besponsa-cds.db

WORKDIR /opt/besponsa-cds
COPY pyproject.toml README.md ./
COPY app ./app
COPY cds_hooks ./cds_hooks
COPY fhir_mappings ./fhir_mappings
RUN pip install ".[postgres,otlp]" \
    && useradd --system --uid 10001 --home-dir /var/lib/besponsa-cds --create-home besponsa

USER besponsa
WORKDIR /var/lib/besponsa-cds
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["besponsa-cds", "serve", "--host", "0.0.0.0"]
