// The Node.js baseline for the load bench: the smallest socket.io 4.8.4 server that
// speaks the events the bench drives, so the Python modes have a yardstick.
//
// Run it by hand:  HOST=127.0.0.1 PORT=5000 node bench/node_reference/server.js
// Settings (environment): HOST, PORT, INSTANCE_NAME, PING_INTERVAL_MS, PING_TIMEOUT_MS.
//
// Events (the same contract as chapter 02's apps):
//   broadcast {text}  -> emits `broadcast` {text} to every client, acks {ok: true}
//   ping              -> acks {ok: true} (a round trip)
//   slow_io {seconds} -> waits without blocking (a timer), then acks {ok: true}
"use strict";

const http = require("node:http");
const path = require("node:path");
// The repository's pinned copy, whichever directory the server is started from.
const { Server } = require(path.join(__dirname, "..", "..", "node_modules", "socket.io"));

const HOST = process.env.HOST || "127.0.0.1";
const PORT = Number(process.env.PORT || 5000);
const INSTANCE_NAME = process.env.INSTANCE_NAME || "node-1";
// socket.io's defaults are 25 s / 20 s; tests shorten them to see ping/pong at work.
const PING_INTERVAL_MS = Number(process.env.PING_INTERVAL_MS || 25000);
const PING_TIMEOUT_MS = Number(process.env.PING_TIMEOUT_MS || 20000);
const MAX_SLOW_IO_SECONDS = 30;

const httpServer = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ status: "ok", instance: INSTANCE_NAME, async_mode: "node" }));
    return;
  }
  res.writeHead(404);
  res.end();
});

// Same origin only (no `cors` option): the bench's clients are not browsers.
const io = new Server(httpServer, {
  transports: ["websocket", "polling"],
  pingInterval: PING_INTERVAL_MS,
  pingTimeout: PING_TIMEOUT_MS,
});

function ack(callback, body) {
  if (typeof callback === "function") callback(body);
}

io.on("connection", (socket) => {
  socket.on("broadcast", (data, callback) => {
    if (!data || typeof data.text !== "string") {
      socket.emit("error", { event: "broadcast", reason: "payload must be {text: string}" });
      return ack(callback, { ok: false, reason: "payload must be {text: string}" });
    }
    io.emit("broadcast", { text: data.text });
    ack(callback, { ok: true });
  });

  socket.on("ping", (...args) => ack(args[args.length - 1], { ok: true }));

  socket.on("slow_io", (data, callback) => {
    const seconds = Number(data && data.seconds);
    if (!(seconds >= 0 && seconds <= MAX_SLOW_IO_SECONDS)) {
      socket.emit("error", { event: "slow_io", reason: `seconds must be 0..${MAX_SLOW_IO_SECONDS}` });
      return ack(callback, { ok: false, reason: `seconds must be 0..${MAX_SLOW_IO_SECONDS}` });
    }
    setTimeout(() => ack(callback, { ok: true }), seconds * 1000);
  });
});

httpServer.listen(PORT, HOST, () => {
  console.log(`node reference ${INSTANCE_NAME} on http://${HOST}:${PORT} (socket.io ${require(path.join(__dirname, "..", "..", "node_modules", "socket.io", "package.json")).version})`);
});

// The bench stops it with SIGTERM: close at once.
process.on("SIGTERM", () => process.exit(0));
