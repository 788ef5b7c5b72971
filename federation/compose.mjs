// Composes supergraph.yaml (rover's format) with @apollo/composition and prints or writes the supergraph SDL.
// usage: node compose.mjs SUPERGRAPH_YAML [--sdl NAME=FILE]... [--out FILE]
// A subgraph given by `subgraph_url` needs its SDL passed with --sdl (nothing is fetched over the network).
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { composeServices } from "@apollo/composition";
import { parse } from "graphql";
import YAML from "yaml";

const args = process.argv.slice(2);
const configPath = args.shift();
const overrides = {};
let out = null;
while (args.length) {
  const flag = args.shift();
  if (flag === "--sdl") {
    const [name, file] = args.shift().split("=");
    overrides[name] = file;
  } else if (flag === "--out") {
    out = args.shift();
  } else {
    console.error(`unknown argument ${flag}`);
    process.exit(2);
  }
}

const config = YAML.parse(readFileSync(configPath, "utf8"));
const base = dirname(resolve(configPath));
const services = Object.entries(config.subgraphs).map(([name, subgraph]) => {
  const file = overrides[name] ?? (subgraph.schema.file && resolve(base, subgraph.schema.file));
  if (!file) {
    console.error(`subgraph ${name}: no schema file; pass --sdl ${name}=FILE`);
    process.exit(2);
  }
  return { name, url: subgraph.routing_url, typeDefs: parse(readFileSync(file, "utf8")) };
});

const result = composeServices(services);
if (result.errors?.length) {
  for (const error of result.errors) console.error(`composition error: ${error.message}`);
  process.exit(1);
}
const sdl = result.supergraphSdl.endsWith("\n") ? result.supergraphSdl : `${result.supergraphSdl}\n`;
if (out) writeFileSync(out, sdl);
else process.stdout.write(sdl);
