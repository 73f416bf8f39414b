# judge-guard's sidecar (`judge-guard serve`), built from this checkout: nothing is fetched under
# the name judge-guard from the npm registry.
#
#   docker build -t judge-guard .
#   docker run -e JUDGE_GUARD_TOKEN=$(openssl rand -hex 24) -v judge-guard-data:/data -p 8787:8787 judge-guard
#
# test/package/dockerfile.test.ts checks this file against package.json and the checkout (no
# Docker engine runs in CI).

# --- build: compile better-sqlite3 from source (.npmrc) and the TypeScript ---
FROM node:20-slim AS build
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
# Scripts off: only better-sqlite3's build is needed (the dev dependencies' downloads are not).
RUN npm ci --ignore-scripts --no-audit --no-fund && npm rebuild better-sqlite3
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts

# --- run: the built package and its runtime dependencies, as a user other than root ---
FROM node:20-slim
ENV NODE_ENV=production \
  JUDGE_GUARD_DB=/data/judge-guard.db
WORKDIR /opt/judge-guard
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# The ledger's folder, owned by the image's user (uid 1000): mount a volume there. Run with --user to share
# a volume with another program's user instead (Compose: Phantom's, see the README).
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 8787
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8787/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Beyond loopback the sidecar needs JUDGE_GUARD_TOKEN (16+ characters): it refuses to start without.
ENTRYPOINT ["node", "/opt/judge-guard/dist/cli/main.js"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8787"]
