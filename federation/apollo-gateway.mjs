// Apollo's JavaScript gateway (same query planner family as Apollo Router) serving a composed supergraph.
// usage: ROUTER_SECRET=... node apollo-gateway.mjs SUPERGRAPH_FILE PORT
// Forwards the client's Authorization header and adds the router secret to every subgraph request.
import { readFileSync } from "node:fs";
import { ApolloGateway, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";

const [supergraphFile, port] = process.argv.slice(2);
const routerSecret = process.env.ROUTER_SECRET;

class Subgraph extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    if (context.authorization) request.http.headers.set("authorization", context.authorization);
    if (routerSecret) request.http.headers.set("router-secret", routerSecret);
  }
}

const gateway = new ApolloGateway({
  supergraphSdl: readFileSync(supergraphFile, "utf8"),
  buildService: ({ url }) => new Subgraph({ url }),
});
const server = new ApolloServer({ gateway, includeStacktraceInErrorResponses: false });
const { url } = await startStandaloneServer(server, {
  listen: { port: Number(port), host: "127.0.0.1" },
  context: async ({ req }) => ({ authorization: req.headers.authorization }),
});
console.log(`apollo gateway ready at ${url}`);
