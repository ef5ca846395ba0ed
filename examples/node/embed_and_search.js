#!/usr/bin/env node
// Embeds an image with the imagesim Embedder, then searches an Index shard with the vector.
// Loads the .proto files from protos/ directly: no generated code.
//
//   node embed_and_search.js IMAGE EMBEDDER_HOST:PORT INDEX_HOST:PORT [K]
// Prints JSON: {"dimension": 2048, "neighbors": [{"key": ..., "distance": ...}, ...]}

"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = path.resolve(__dirname, "..", "..", "protos");
const DEADLINE_MS = 30000;
const MAX_MESSAGE = 64 * 1024 * 1024;

function loadPackage() {
  const definition = protoLoader.loadSync(
    ["imagesim/v1/embedder.proto", "imagesim/v1/index.proto"],
    { includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: String, defaults: true }
  );
  return grpc.loadPackageDefinition(definition).imagesim.v1;
}

function deadline() {
  return new Date(Date.now() + DEADLINE_MS);
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline() }, (err, reply) =>
      err ? reject(err) : resolve(reply)
    );
  });
}

async function main() {
  const [image, embedderAddress, indexAddress, k = "5"] = process.argv.slice(2);
  if (!image || !embedderAddress || !indexAddress) {
    console.error("usage: node embed_and_search.js IMAGE EMBEDDER_HOST:PORT INDEX_HOST:PORT [K]");
    process.exit(2);
  }
  const v1 = loadPackage();
  const options = {
    "grpc.max_send_message_length": MAX_MESSAGE,
    "grpc.max_receive_message_length": MAX_MESSAGE,
  };
  const credentials = grpc.credentials.createInsecure();
  const embedder = new v1.Embedder(embedderAddress, credentials, options);
  const index = new v1.Index(indexAddress, credentials, options);
  try {
    const embedded = await unary(embedder, "Embed", {
      image: fs.readFileSync(image),
      space: "SPACE_FULL",
    });
    const found = await unary(index, "Search", {
      vector: embedded.embedding.values,
      k: Number(k),
    });
    console.log(JSON.stringify({
      dimension: embedded.embedding.dimension,
      neighbors: found.neighbors.map((n) => ({ key: n.key, distance: n.distance })),
    }));
  } catch (err) {
    console.error(`error: ${grpc.status[err.code]}: ${err.details}`);
    process.exit(1);
  } finally {
    embedder.close();
    index.close();
  }
}

main();
