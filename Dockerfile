# remote-spmc: build with the dev dependencies, run with the production ones only, as a non-root
# user, with `remote-spmc` as the entrypoint and the gRPC health service as the health check.
# Only what runs is built and shipped: no tests, no benches.

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY proto ./proto
COPY server ./server
COPY client-driver ./client-driver
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /opt/remote-spmc
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
# Read at run time: the wire contract and the dashboard page.
COPY proto/remote_spmc.proto ./proto/remote_spmc.proto
COPY server/http/public ./server/http/public
COPY deploy ./deploy
RUN ln -s /opt/remote-spmc/dist/server/main.js /usr/local/bin/remote-spmc && chmod +x dist/server/main.js
USER node
EXPOSE 50051 8080
HEALTHCHECK --interval=5s --timeout=4s --start-period=5s --retries=5 \
  CMD ["remote-spmc", "health", "--server", "127.0.0.1:50051"]
ENTRYPOINT ["remote-spmc"]
CMD ["serve", "--grpc", "0.0.0.0:50051", "--http", "0.0.0.0:8080"]
