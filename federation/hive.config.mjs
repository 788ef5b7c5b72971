// Hive Gateway configuration for the gateway tests: the client's Authorization header and the router secret go to
// every subgraph. The supergraph file and port are given on the command line.
import { defineConfig } from "@graphql-hive/gateway";

export const gatewayConfig = defineConfig({
  propagateHeaders: {
    fromClientToSubgraphs({ request }) {
      const headers = {};
      const authorization = request.headers.get("authorization");
      if (authorization) headers.authorization = authorization;
      if (process.env.ROUTER_SECRET) headers["router-secret"] = process.env.ROUTER_SECRET;
      return headers;
    },
  },
});
