# One image for every Shoal role: `shoal serve`, `shoal node`, `shoal gateway`.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shoal ./shoal
COPY node ./node
COPY gateway ./gateway
RUN pip install --no-cache-dir . && useradd --system --home /data shoal \
    && mkdir -p /data && chown shoal /data
USER shoal
WORKDIR /data
ENTRYPOINT ["shoal"]
CMD ["serve", "--data", "/data", "--listen", "0.0.0.0:5000"]
