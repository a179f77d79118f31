# syntax=docker/dockerfile:1.7
# One image for both components: `mailroute operator ...` and `mailroute relay ...` (the chart passes the args).
# Node 24 runs the TypeScript sources directly (type stripping), so there is no build step: the image holds the
# sources, the production dependencies, and the base image's node (not the `node` devDependency).
ARG NODE_IMAGE=node:24-bookworm-slim

# --- dependencies: production only, with our patches applied -------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV NODE_ENV=production npm_config_update_notifier=false
COPY package.json package-lock.json .npmrc ./
COPY patches ./patches
# --ignore-scripts: the postinstall (patch-package) is a devDependency; apply the patches explicitly instead.
# Keep the patch-package version equal to package.json's devDependency (test/helm/dockerfile.test.ts checks it).
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npx --yes patch-package@8.0.1 --error-on-fail \
 && rm -rf patches

# --- runtime ----------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
LABEL org.opencontainers.image.title="mailroute" \
      org.opencontainers.image.description="Kubernetes operator and SMTP relay for mail migrations" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/mailroute/mailroute"
# --max-semi-space-size=16: V8 otherwise grows the young generation to 2 x 64 MiB under the relay's allocation rate
# (peak RSS ~260 MiB at 500 msg/s instead of ~175 MiB, same throughput; docs/perf.md).
ENV NODE_ENV=production \
    NODE_OPTIONS="--enable-source-maps --max-semi-space-size=16"
WORKDIR /app
COPY --from=deps --chown=0:0 /app/node_modules ./node_modules
COPY --chown=0:0 package.json ./
COPY --chown=0:0 bin ./bin
COPY --chown=0:0 cli ./cli
COPY --chown=0:0 routing ./routing
COPY --chown=0:0 lib ./lib
COPY --chown=0:0 contract ./contract
COPY --chown=0:0 relay ./relay
COPY --chown=0:0 operator ./operator
COPY --chown=0:0 crds ./crds
COPY --chown=0:0 examples ./examples
# The spool is a volume (a PVC in the chart); it must be writable by the runtime user.
RUN mkdir -p /var/spool/mailroute /etc/mailroute && chown 1000:1000 /var/spool/mailroute
VOLUME ["/var/spool/mailroute"]
# The base image's `node` user (uid 1000), numeric so that Kubernetes can verify runAsNonRoot.
USER 1000:1000
EXPOSE 2525 9090 8080
ENTRYPOINT ["node", "/app/bin/mailroute.js"]
CMD ["--help"]
