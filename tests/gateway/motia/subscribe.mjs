// Subscribes to a fluvial gateway with Motia's own stream client and prints, one JSON line each,
// every state the client computes: {"sub": "group"|"item", "state": ...} and {"sub": ..., "event": ...}.
// Usage: node subscribe.mjs ws://127.0.0.1:PORT/ STREAM GROUP ID
import { Stream } from "@motiadev/stream-client-node";

const [url, streamName, groupId, id] = process.argv.slice(2);
const stream = new Stream(url);
const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const group = stream.subscribeGroup(streamName, groupId);
group.addChangeListener((state) => out({ sub: "group", state }));
group.onEvent("note", (data) => out({ sub: "group", event: data }));

const item = stream.subscribeItem(streamName, groupId, id);
item.addChangeListener((state) => out({ sub: "item", state }));
item.onEvent("note", (data) => out({ sub: "item", event: data }));

process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
