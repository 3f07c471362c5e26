# cdc-router as a container (used by docker-compose.yml). Runs the TypeScript sources through tsx,
# exactly as `node bin/cdc-router.js` does on a machine.
FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY bin ./bin
COPY src ./src
COPY connectors ./connectors
COPY transforms ./transforms
COPY examples ./examples
ENTRYPOINT ["node", "bin/cdc-router.js"]
CMD ["run", "--config", "examples/shop.yaml", "--progress"]
