# One image for every part (ingress, retriever, generator, status, the chat); deploy/k8s picks the
# command per Deployment. The offline model is not included: in a cluster, point OPENAI_BASE_URL at
# OpenAI or a model server (vLLM, Ollama…).
#   docker build -t llm-relay .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 LOG_JSON=true
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY ui ./ui
COPY supabase ./supabase
RUN pip install . && useradd --system --uid 10001 relay && mkdir -p /app/.state && chown relay /app/.state
USER relay
# each service binds 127.0.0.1 by default; in a pod it must listen on every interface
ENV INGRESS_HOST=0.0.0.0 STATUS_HOST=0.0.0.0 RETRIEVER_HOST=0.0.0.0 GENERATOR_HOST=0.0.0.0
EXPOSE 8700 8701 8702 8703 8704
CMD ["relay-ingress"]
