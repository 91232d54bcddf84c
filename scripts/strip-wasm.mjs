// Drops a wasm module's custom sections that nothing reads when it runs:
// `name` (wasm-bindgen's names of its own glue functions), `producers` and
// `target_features`. They are metadata, and the Worker's upload carries
// every byte (scripts/build-worker.sh runs this on worker-build's output).
// Usage: node scripts/strip-wasm.mjs FILE.wasm
import { readFileSync, writeFileSync } from "node:fs";

const DROPPED = new Set(["name", "producers", "target_features"]);
const file = process.argv[2];
const wasm = readFileSync(file);
if (wasm.readUInt32LE(0) !== 0x6d736100) throw new Error(`${file} is not a wasm module`);

function leb(at) {
  let value = 0, shift = 0, byte;
  do {
    byte = wasm[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, at];
}

const kept = [wasm.subarray(0, 8)];
let at = 8, dropped = 0;
while (at < wasm.length) {
  const start = at;
  const id = wasm[at];
  const [size, body] = leb(at + 1);
  const end = body + size;
  if (end > wasm.length) throw new Error(`${file}: a section runs past the end of the module`);
  let name = null;
  if (id === 0) {
    const [length, text] = leb(body);
    name = wasm.subarray(text, text + length).toString("utf8");
  }
  if (name !== null && DROPPED.has(name)) dropped += end - start;
  else kept.push(wasm.subarray(start, end));
  at = end;
}
writeFileSync(file, Buffer.concat(kept));
console.log(`strip-wasm: ${file}: ${dropped} bytes of custom sections dropped`);
