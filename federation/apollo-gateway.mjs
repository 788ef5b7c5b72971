// Apollo's JavaScript gateway (same query planner family as Apollo Router) serving a composed supergraph.
// usage: ROUTER_SECRET=... node apollo-gateway.mjs SUPERGRAPH_FILE PORT
// Forwards the client's Authorization header and adds the router secret to every subgraph request.
// With OTEL_EXPORTER_OTLP_ENDPOINT set, the gateway's own spans go there over OTLP, and every subgraph request
// carries the W3C `traceparent` of its fetch span, as Apollo Router sends it.
import { readFileSync } from "node:fs";
import { context as otelContext, propagation } from "@opentelemetry/api";
import { ApolloGateway, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";

const [supergraphFile, port] = process.argv.slice(2);
const routerSecret = process.env.ROUTER_SECRET;

if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
  const { NodeTracerProvider, BatchSpanProcessor } = await import("@opentelemetry/sdk-trace-node");
  const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-proto");
  // register(): the global provider (@apollo/gateway makes its spans with the global API), async context, and the
  // W3C trace-context propagator used below. Endpoint and batching come from the standard OTEL_* variables.
  new NodeTracerProvider({ spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())] }).register();
}
const headerSetter = { set: (headers, name, value) => headers.set(name, value) };

class Subgraph extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    if (context.authorization) request.http.headers.set("authorization", context.authorization);
    if (routerSecret) request.http.headers.set("router-secret", routerSecret);
    propagation.inject(otelContext.active(), request.http.headers, headerSetter); // no-op unless tracing is on
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
