// The polyglot proof: a Node.js client of memoryd built from nothing but proto/.
//
//   node tests/node/client.mjs HOST:PORT [API_KEY]
//
// (or MEMORYD_ADDR / MEMORYD_API_KEY in the environment; MEMORYD_DEADLINE_MS sets each
// call's deadline, 15 s by default). The protos are loaded at run time with
// @grpc/proto-loader, no code generation. With an API key, every call carries
// `authorization: Bearer <key>` metadata.
//
// It drives a conversation (AppendMessages creating it, an idempotent retry, a second
// append, GetContextWindow with and without a token budget), memories (CreateMemory
// with an embedding, SearchMemories by embedding and by text), documents (PutDocument,
// UploadDocument as a client stream, SearchDocuments by text with a neighbouring chunk)
// and one failing call (GetConversation of a missing id), checks the answers, prints one JSON line with
// what it saw and exits 0; on any failure it prints the reason to stderr and exits 1.

import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const PROTO_DIR = fileURLToPath(new URL("../../proto", import.meta.url));
const PROTO_FILES = [
  "memoryd/v1/conversation.proto",
  "memoryd/v1/memory.proto",
  "memoryd/v1/document.proto",
];
const EMBEDDING_DIM = Number(process.env.MEMORYD_EMBEDDING_DIM || 384);
const DEADLINE_MS = Number(process.env.MEMORYD_DEADLINE_MS || 15_000);

// google.rpc.Status and the details memoryd attaches, to read grpc-status-details-bin.
const RPC_STATUS = protobuf.parse(
  `
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
  message BadRequest {
    message FieldViolation { string field = 1; string description = 2; }
    repeated FieldViolation field_violations = 1;
  }
  `,
  { keepCase: true },
).root;

class CheckFailed extends Error {}

function check(condition, what, actual) {
  if (!condition) {
    throw new CheckFailed(`${what} (got ${JSON.stringify(actual)})`);
  }
}

function sameList(actual, expected) {
  return JSON.stringify(actual) === JSON.stringify(expected);
}

/** A deterministic unit vector of EMBEDDING_DIM floats (a small LCG, seeded). */
function embedding(seed) {
  let state = seed >>> 0;
  const values = [];
  for (let i = 0; i < EMBEDDING_DIM; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    values.push(state / 2 ** 32 - 0.5);
  }
  const norm = Math.hypot(...values);
  return values.map((v) => Math.fround(v / norm));
}

/** The google.rpc.Status details of a failed call, decoded ({} entries by type name). */
function statusDetails(error) {
  const raw = error.metadata?.get("grpc-status-details-bin") ?? [];
  if (raw.length === 0) {
    return null;
  }
  const Status = RPC_STATUS.lookupType("google.rpc.Status");
  const status = Status.toObject(Status.decode(raw[0]), { defaults: true });
  const details = {};
  for (const any of status.details) {
    const typeName = any.type_url.split("/").pop();
    const shortName = typeName.replace(/^google\.rpc\./, "");
    const type = RPC_STATUS.lookup(`google.rpc.${shortName}`);
    details[typeName] = type ? type.toObject(type.decode(any.value), { defaults: true }) : null;
  }
  return { code: status.code, message: status.message, details };
}

function loadServices() {
  const definition = protoLoader.loadSync(PROTO_FILES, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [PROTO_DIR],
  });
  return grpc.loadPackageDefinition(definition).memoryd.v1;
}

/** Promise-returning unary calls on a stub, with a deadline and the caller's metadata. */
function caller(stub, metadata) {
  return (method, request) =>
    new Promise((resolve, reject) => {
      stub[method](
        request,
        metadata.clone(),
        { deadline: Date.now() + DEADLINE_MS },
        (error, response) => (error ? reject(error) : resolve(response)),
      );
    });
}

/** A client-streaming call: ``messages`` written in order, then the one response. */
function upload(stub, metadata, method, messages) {
  return new Promise((resolve, reject) => {
    const call = stub[method](metadata.clone(), { deadline: Date.now() + DEADLINE_MS }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
    for (const message of messages) {
      call.write(message);
    }
    call.end();
  });
}

function waitForReady(client) {
  return new Promise((resolve, reject) =>
    client.waitForReady(Date.now() + DEADLINE_MS, (error) => (error ? reject(error) : resolve())),
  );
}

async function conversationFlow(call, uid) {
  const conversationId = `node-${uid}`;
  const first = {
    conversation_id: conversationId,
    create_if_missing: true,
    conversation: { user_id: `user-${uid}`, app_name: "node-client", title: "from Node.js" },
    request_id: `append-${uid}`,
    messages: [
      { role: "MESSAGE_ROLE_SYSTEM", content: "be brief", token_count: 2 },
      { role: "MESSAGE_ROLE_USER", content: "hello from node", token_count: 3 },
      { role: "MESSAGE_ROLE_ASSISTANT", content: "hi, node", token_count: 5, model: "m-1" },
    ],
  };
  const appended = await call("AppendMessages", first);
  const appendSeqs = appended.messages.map((m) => m.seq);
  check(sameList(appendSeqs, ["1", "2", "3"]), "first append's seqs", appendSeqs);
  check(appended.conversation.id === conversationId, "created conversation id", appended.conversation.id);
  check(appended.conversation.status === "CONVERSATION_STATUS_ACTIVE", "status", appended.conversation.status);

  // The same request_id again: the first call's messages, nothing appended.
  const retried = await call("AppendMessages", first);
  const retrySeqs = retried.messages.map((m) => m.seq);
  const retrySameIds = sameList(
    retried.messages.map((m) => m.id),
    appended.messages.map((m) => m.id),
  );
  check(retrySameIds, "retry returns the first call's message ids", retried.messages);

  const second = await call("AppendMessages", {
    conversation_id: conversationId,
    messages: [{ role: "MESSAGE_ROLE_USER", content: "and one more", token_count: 4 }],
  });
  const secondSeqs = second.messages.map((m) => m.seq);
  check(sameList(secondSeqs, ["4"]), "second append's seq", secondSeqs);
  const totals = second.conversation;
  check(totals.message_count === "4", "message_count", totals.message_count);
  check(totals.total_input_tokens === "9", "total_input_tokens", totals.total_input_tokens);
  check(totals.total_output_tokens === "5", "total_output_tokens", totals.total_output_tokens);

  const window = await call("GetContextWindow", { conversation_id: conversationId });
  const windowSeqs = window.messages.map((m) => m.seq);
  check(sameList(windowSeqs, ["1", "2", "3", "4"]), "window seqs", windowSeqs);
  check(window.total_tokens === "14", "window total_tokens", window.total_tokens);
  check(window.omitted_message_count === "0", "window omitted", window.omitted_message_count);

  const budget = await call("GetContextWindow", { conversation_id: conversationId, max_tokens: 9 });
  const budgetSeqs = budget.messages.map((m) => m.seq);
  check(sameList(budgetSeqs, ["3", "4"]), "budget window seqs", budgetSeqs);
  check(budget.total_tokens === "9", "budget total_tokens", budget.total_tokens);

  return {
    id: conversationId,
    append_seqs: appendSeqs,
    retry_seqs: retrySeqs,
    retry_same_ids: retrySameIds,
    second_seqs: secondSeqs,
    message_count: totals.message_count,
    total_input_tokens: totals.total_input_tokens,
    total_output_tokens: totals.total_output_tokens,
    window: {
      seqs: windowSeqs,
      roles: window.messages.map((m) => m.role),
      contents: window.messages.map((m) => m.content),
      total_tokens: window.total_tokens,
      omitted_message_count: window.omitted_message_count,
    },
    budget_window: {
      seqs: budgetSeqs,
      total_tokens: budget.total_tokens,
      omitted_message_count: budget.omitted_message_count,
    },
  };
}

async function memoryFlow(call, uid) {
  const namespace = ["node", uid];
  const target = embedding(1);
  const created = (
    await call("CreateMemory", {
      memory: {
        namespace,
        key: "favourite-fruit",
        memory_type: "MEMORY_TYPE_USER_PROFILE",
        content: "The Node.js client's favourite fruit is the persimmon",
        embedding: target,
        importance: 7,
        tags: ["fruit"],
        metadata: { fields: { source: { string_value: "node" } } },
      },
      request_id: `memory-${uid}`,
    })
  ).memory;
  check(created.id.length > 0, "created memory id", created.id);
  check(created.embedding.length === EMBEDDING_DIM, "stored embedding length", created.embedding.length);
  check(created.status === "MEMORY_STATUS_ACTIVE", "memory status", created.status);
  check(created.version === "1", "memory version", created.version);

  const other = (
    await call("CreateMemory", {
      memory: { namespace, content: "Tuesday's weather was grey and windy", embedding: embedding(2) },
    })
  ).memory;

  const filter = { namespace_prefix: namespace };
  const byEmbedding = (
    await call("SearchMemories", { filter, query_embedding: target, top_k: 5 })
  ).results;
  const embeddingIds = byEmbedding.map((r) => r.memory.id);
  check(embeddingIds[0] === created.id, "search by embedding finds the memory first", embeddingIds);
  check(byEmbedding[0].similarity_score > 0.999, "similarity to itself", byEmbedding[0].similarity_score);

  const byText = (await call("SearchMemories", { filter, query_text: "persimmon" })).results;
  const textIds = byText.map((r) => r.memory.id);
  check(textIds[0] === created.id, "search by text finds the memory first", textIds);
  check(byText[0].text_score > 0, "text score", byText[0].text_score);

  return {
    created_id: created.id,
    other_id: other.id,
    embedding_length: created.embedding.length,
    memory_type: created.memory_type,
    by_embedding: {
      ids: embeddingIds,
      score: byEmbedding[0].score,
      similarity_score: byEmbedding[0].similarity_score,
    },
    by_text: { ids: textIds, text_score: byText[0].text_score },
  };
}

async function documentFlow(call, stream, uid) {
  const namespace = ["node", uid];
  const content = "# Guide\n\nIntro.\n\n## Setup\n\nInstall the quince package.\n\n## Use\n\nRun it.\n";
  const put = await call("PutDocument", { document: { namespace, path: "guide.md", content } });
  check(put.created === true, "PutDocument created", put);
  check(put.document.chunk_count === 3, "chunk_count", put.document.chunk_count);
  // UTF-8 bytes in pieces, one ending inside "é": the server joins them.
  const bytes = Buffer.from("# Upload\n\nUploaded café notes about quinces.\n", "utf8");
  const cut = bytes.indexOf(0xc3) + 1;
  const uploaded = await stream("UploadDocument", [
    { header: { document: { namespace, path: "upload.md" } } },
    { content: bytes.subarray(0, cut) },
    { content: bytes.subarray(cut) },
  ]);
  check(uploaded.document.size_bytes === String(bytes.length), "uploaded size", uploaded.document.size_bytes);
  const found = (
    await call("SearchDocuments", {
      query_text: "quince",
      filter: { namespace_prefix: namespace },
      neighbor_chunks: 1,
    })
  ).results;
  const paths = found.map((r) => r.document.path);
  check(paths.includes("guide.md") && paths.includes("upload.md"), "both documents found", paths);
  const hit = found.find((r) => r.document.path === "guide.md");
  check(sameList(hit.chunk.heading_path, ["Guide", "Setup"]), "hit's heading path", hit.chunk.heading_path);
  check(content.slice(hit.chunk.start_offset, hit.chunk.end_offset) === hit.chunk.content, "offsets", hit.chunk);
  return {
    put_id: put.document.id,
    chunk_count: put.document.chunk_count,
    uploaded_size: uploaded.document.size_bytes,
    found_paths: paths,
    heading_path: hit.chunk.heading_path,
    neighbours: [hit.chunks_before.length, hit.chunks_after.length],
  };
}

async function errorFlow(call, uid) {
  const missing = `missing-${uid}`;
  try {
    await call("GetConversation", { conversation_id: missing });
  } catch (error) {
    const status = statusDetails(error);
    check(error.code === grpc.status.NOT_FOUND, "GetConversation of a missing id is NOT_FOUND", error.code);
    check(error.details.includes(missing), "the message names the id", error.details);
    check(status !== null, "grpc-status-details-bin is present", null);
    return {
      code: error.code,
      code_name: grpc.status[error.code],
      details: error.details,
      status,
    };
  }
  throw new CheckFailed(`GetConversation(${missing}) succeeded`);
}

async function main() {
  const addr = process.argv[2] || process.env.MEMORYD_ADDR;
  const apiKey = process.argv[3] || process.env.MEMORYD_API_KEY || "";
  if (!addr) {
    throw new CheckFailed("usage: node client.mjs HOST:PORT [API_KEY]");
  }
  const metadata = new grpc.Metadata();
  if (apiKey) {
    metadata.set("authorization", `Bearer ${apiKey}`);
  }
  const { ConversationService, MemoryService, DocumentService } = loadServices();
  const credentials = grpc.credentials.createInsecure();
  const conversations = new ConversationService(addr, credentials);
  const memories = new MemoryService(addr, credentials);
  const documents = new DocumentService(addr, credentials);
  try {
    await waitForReady(conversations);
    const uid = randomUUID().replaceAll("-", "").slice(0, 12);
    const result = {
      ok: true,
      node: process.version,
      addr,
      authorization_sent: Boolean(apiKey),
      conversation: await conversationFlow(caller(conversations, metadata), uid),
      memories: await memoryFlow(caller(memories, metadata), uid),
      documents: await documentFlow(
        caller(documents, metadata),
        (method, messages) => upload(documents, metadata, method, messages),
        uid,
      ),
      not_found: await errorFlow(caller(conversations, metadata), uid),
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    conversations.close();
    memories.close();
    documents.close();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    const where = error instanceof CheckFailed ? "check failed" : "error";
    const code = error.code !== undefined ? ` [gRPC ${grpc.status[error.code] ?? error.code}]` : "";
    process.stderr.write(`memoryd node client: ${where}${code}: ${error.message}\n`);
    process.exit(1);
  },
);
