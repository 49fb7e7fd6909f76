// Train the digits MLP whose training step paralens exported as ONNX, in Node, with onnxruntime-node:
// no Python. The folder holds what examples/onnx_node/export.py wrote: step.onnx (one Adam step),
// step.state.json + step.state.bin (the initial state), model.onnx (the model, for the test accuracy)
// and digits.json + digits.bin (the data). Every file is checked against its .sha256 first.
//
//   node train.mjs FOLDER [--epochs 3] [--batch 32] [--json result.json]
//
// Prints the mean loss of each epoch and the test accuracy; --json also writes them, with the
// trained parameters, for the test that holds this run to the Python onnxruntime run of the same files.

import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: { epochs: { type: "string", default: "3" }, batch: { type: "string", default: "32" }, json: { type: "string" } },
});
const folder = positionals[0] ?? "onnx-digits";
const epochs = Number.parseInt(opts.epochs, 10);
const batch = Number.parseInt(opts.batch, 10);

// The bytes of a file, after checking them against the sha256sum line beside it.
function verified(name) {
  const path = join(folder, name);
  const data = readFileSync(path);
  const [digest, file] = readFileSync(`${path}.sha256`, "ascii").trim().split(/\s+/);
  const actual = createHash("sha256").update(data).digest("hex");
  if (digest !== actual || file !== basename(path)) {
    throw new Error(`${path} does not match its checksum file ${path}.sha256; export it again`);
  }
  return data;
}

const ARRAYS = { float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array, uint32: Uint32Array };

// One array of a little-endian data file (copied out, so that it is aligned), as an onnxruntime tensor.
function tensor(data, entry, shape = entry.shape) {
  const Kind = ARRAYS[entry.dtype];
  if (!Kind) throw new Error(`no typed array for dtype ${entry.dtype}`);
  const bytes = new Uint8Array(data.subarray(entry.offset, entry.offset + entry.bytes));
  return new ort.Tensor(entry.dtype, new Kind(bytes.buffer), shape);
}

// Rows [start, start + n) of a tensor whose first axis is the batch.
function rows(t, start, n) {
  const size = t.dims.slice(1).reduce((a, b) => a * b, 1);
  return new ort.Tensor(t.type, t.data.slice(start * size, (start + n) * size), [n, ...t.dims.slice(1)]);
}

const manifest = JSON.parse(verified("step.state.json"));
const stateBytes = verified(manifest.data);
const state = Object.fromEntries(manifest.state.map((e) => [e.name, tensor(stateBytes, e)]));
const digitsMeta = JSON.parse(verified("digits.json"));
const digitsBytes = verified("digits.bin");
const data = Object.fromEntries(Object.entries(digitsMeta).map(([k, e]) => [k, tensor(digitsBytes, e)]));

// one thread: the same order of sums as the Python run the test compares with
const options = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential" };
const step = await ort.InferenceSession.create(verified("step.onnx"), options);
const model = await ort.InferenceSession.create(verified("model.onnx"), options);

const losses = [];
const steps = Math.floor(data.x_train.dims[0] / batch);
for (let epoch = 0; epoch < epochs; epoch++) {
  let total = 0;
  for (let b = 0; b < steps; b++) {
    const out = await step.run({ ...state, x: rows(data.x_train, b * batch, batch), y: rows(data.y_train, b * batch, batch) });
    for (const e of manifest.state) if (e.output) state[e.name] = out[e.output];
    total += out.loss.data[0];
  }
  losses.push(total / steps);
  console.log(`epoch ${epoch + 1}: loss ${(total / steps).toFixed(6)}`);
}

const feeds = { x: data.x_test };
for (const name of model.inputNames) if (name !== "x") feeds[name] = state[name];
const logits = (await model.run(feeds))[model.outputNames[0]];
const classes = logits.dims[1];
let right = 0;
for (let i = 0; i < logits.dims[0]; i++) {
  const row = logits.data.subarray(i * classes, (i + 1) * classes);
  let best = 0;
  for (let c = 1; c < classes; c++) if (row[c] > row[best]) best = c;
  if (best === data.y_test.data[i]) right++;
}
const accuracy = right / logits.dims[0];
console.log(`test accuracy ${accuracy.toFixed(4)}`);

if (opts.json) {
  const params = Object.fromEntries(Object.entries(state).filter(([k]) => k.startsWith("params/")).map(([k, t]) => [k, Array.from(t.data)]));
  writeFileSync(opts.json, JSON.stringify({ losses, accuracy, params }));
}
