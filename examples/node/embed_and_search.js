#!/usr/bin/env node
// imagesim from Node.js, loading the .proto files directly (no generated code):
// embeds images with the Embedder, searches every Index shard with all of them in one batched
// Search per shard, merges each query's top-k, and (with --get KEY) reads one item from the
// shard that holds it, found with the collection's routing rule. Errors print their
// machine-readable reason (google.rpc.ErrorInfo from the rich status details).
//
//   node embed_and_search.js --embedder HOST:PORT --shards HOST:PORT[,HOST:PORT...]
//                            [--k 5] [--get KEY] IMAGE [IMAGE...]
// Prints JSON: {"dimension": 2048, "results": [{"image": ..., "neighbors": [{"key", "distance",
// "shard"}]}], "item": {"key", "shard_id", "dimension", "metadata"}}
//
// Servers with TLS and API keys: the same variables as the imagesim CLI.
//   IMAGESIM_TLS_CA=ca.crt          CA that signed the servers' certificates (turns TLS on)
//   IMAGESIM_TLS_CLIENT_CERT / _TLS_CLIENT_KEY    client certificate and key (mutual TLS)
//   IMAGESIM_TLS_SERVER_NAME        name to check in the certificates instead of the host
//   IMAGESIM_API_KEY=...            sent as `authorization: Bearer KEY` on every call

"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const PROTO_ROOT = path.resolve(__dirname, "..", "..", "protos");
// google/rpc/status.proto and error_details.proto, which imagesim's protos import.
const GOOGLE_PROTOS = path.dirname(require.resolve("google-proto-files/package.json"));
const DEADLINE_MS = 30000;
const MAX_MESSAGE = 64 * 1024 * 1024;

function loadPackage() {
  const definition = protoLoader.loadSync(
    ["imagesim/v1/embedder.proto", "imagesim/v1/index.proto"],
    {
      includeDirs: [PROTO_ROOT, GOOGLE_PROTOS],
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
    }
  );
  return grpc.loadPackageDefinition(definition).imagesim.v1;
}

// The reason of an imagesim error: google.rpc.Status in the grpc-status-details-bin trailer,
// holding a google.rpc.ErrorInfo (domain "imagesim.v1").
const statusTypes = protobuf.loadSync([
  path.join(GOOGLE_PROTOS, "google/rpc/status.proto"),
  path.join(GOOGLE_PROTOS, "google/rpc/error_details.proto"),
]);

function errorReason(err) {
  const [details] = (err.metadata && err.metadata.get("grpc-status-details-bin")) || [];
  if (!details) return "";
  const status = statusTypes.lookupType("google.rpc.Status").decode(details);
  const ErrorInfo = statusTypes.lookupType("google.rpc.ErrorInfo");
  for (const any of status.details) {
    if (any.type_url.endsWith("/google.rpc.ErrorInfo")) {
      return ErrorInfo.decode(any.value).reason;
    }
  }
  return "";
}

// Routing: a key lives on the shard whose id has the highest score, the first 8 bytes of
// SHA-256("shard_id\0key") as a big-endian unsigned integer (imagesim/routing.py).
function score(shardId, key) {
  const digest = crypto.createHash("sha256").update(`${shardId}\0${key}`, "utf8").digest();
  return digest.readBigUInt64BE(0);
}

function home(key, shardIds) {
  let best = null;
  for (const id of shardIds) {
    const s = score(id, key);
    if (best === null || s > best.score || (s === best.score && id > best.id)) {
      best = { id, score: s };
    }
  }
  return best.id;
}

function env(name) {
  const value = (process.env[name] || "").trim();
  return value === "" ? undefined : value;
}

// TLS when a CA or a client certificate is given; plaintext otherwise (loopback, tests).
function channelCredentials() {
  const ca = env("IMAGESIM_TLS_CA");
  // IMAGESIM_TLS_CERT / _TLS_KEY: the old names, still read
  const cert = env("IMAGESIM_TLS_CLIENT_CERT") || env("IMAGESIM_TLS_CERT");
  const key = env("IMAGESIM_TLS_CLIENT_KEY") || env("IMAGESIM_TLS_KEY");
  if (!ca && !cert) {
    return grpc.credentials.createInsecure();
  }
  const read = (file) => (file ? fs.readFileSync(file) : null);
  return grpc.credentials.createSsl(read(ca), read(key), read(cert));
}

// The API key travels as call metadata (grpc-js allows call credentials only over TLS).
function callMetadata() {
  const metadata = new grpc.Metadata();
  const apiKey = env("IMAGESIM_API_KEY");
  if (apiKey) {
    metadata.add("authorization", `Bearer ${apiKey}`);
  }
  return metadata;
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    const options = { deadline: new Date(Date.now() + DEADLINE_MS) };
    client[method](request, callMetadata(), options, (err, reply) =>
      err ? reject(err) : resolve(reply)
    );
  });
}

function parseArgs(argv) {
  const args = { k: 5, images: [] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === "--embedder") args.embedder = argv[++i];
    else if (flag === "--shards") args.shards = argv[++i].split(",").filter(Boolean);
    else if (flag === "--k") args.k = Number(argv[++i]);
    else if (flag === "--get") args.get = argv[++i];
    else args.images.push(flag);
  }
  if (!args.embedder || !args.shards || args.images.length === 0) {
    console.error(
      "usage: node embed_and_search.js --embedder HOST:PORT --shards HOST:PORT[,...] " +
        "[--k 5] [--get KEY] IMAGE [IMAGE...]"
    );
    process.exit(2);
  }
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const v1 = loadPackage();
  const options = {
    "grpc.max_send_message_length": MAX_MESSAGE,
    "grpc.max_receive_message_length": MAX_MESSAGE,
  };
  if (env("IMAGESIM_TLS_SERVER_NAME")) {
    options["grpc.ssl_target_name_override"] = env("IMAGESIM_TLS_SERVER_NAME");
  }
  const credentials = channelCredentials();
  const embedder = new v1.Embedder(args.embedder, credentials, options);
  const shards = args.shards.map((address) => ({
    address,
    client: new v1.Index(address, credentials, options),
  }));
  try {
    const vectors = [];
    for (const image of args.images) {
      const reply = await unary(embedder, "Embed", {
        image: fs.readFileSync(image),
        space: "SPACE_FULL",
      });
      vectors.push(reply.embedding.values);
    }
    // One Search per shard carrying every query vector; merge each query's top-k.
    const replies = await Promise.all(
      shards.map((s) =>
        unary(s.client, "Search", { queries: vectors.map((values) => ({ values })), k: args.k })
      )
    );
    const results = args.images.map((image, q) => {
      const best = new Map();
      replies.forEach((reply, n) => {
        for (const hit of reply.results[q].neighbors) {
          const seen = best.get(hit.key);
          if (!seen || hit.distance < seen.distance) {
            best.set(hit.key, { key: hit.key, distance: hit.distance, shard: shards[n].address });
          }
        }
      });
      const neighbors = [...best.values()]
        .sort((a, b) => a.distance - b.distance || (a.key < b.key ? -1 : 1))
        .slice(0, args.k);
      return { image, neighbors };
    });
    const out = { dimension: vectors[0].length, results };
    if (args.get) {
      const stats = await Promise.all(shards.map((s) => unary(s.client, "Stats", {})));
      const ids = stats.map((s) => s.shard_id);
      const recorded = stats.find((s) => s.layout && s.layout.version > 0);
      const owner = home(args.get, recorded ? recorded.layout.shard_ids : ids);
      const reply = await unary(shards[ids.indexOf(owner)].client, "Get", { key: args.get });
      out.item = {
        key: reply.item.key,
        shard_id: owner,
        dimension: reply.item.vector.length,
        metadata: reply.item.metadata,
      };
    }
    console.log(JSON.stringify(out));
  } catch (err) {
    const reason = errorReason(err);
    console.error(`error: ${grpc.status[err.code]}${reason ? ` (${reason})` : ""}: ${err.details}`);
    process.exit(1);
  } finally {
    embedder.close();
    shards.forEach((s) => s.client.close());
  }
}

main();
