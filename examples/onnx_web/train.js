// Train Iris in the page: the exported step (build/step.onnx), its initial state (build/step.state.*)
// and the data (build/iris.*), each checked against its .sha256, run by onnxruntime-web (WebAssembly,
// served from this machine under /ort/). ?steps=N sets the number of full-batch steps (default 300).
// The result is left in window.paralens ({ losses, draws } or { error }) for the test that drives the page.
import * as ort from "/ort/ort.wasm.bundle.min.mjs";

ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = "/ort/";

const status = document.getElementById("status");
const canvas = document.getElementById("loss");
const ARRAYS = { float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array, uint32: Uint32Array };

async function verified(name) {
  const [data, sum] = await Promise.all([fetch(`build/${name}`), fetch(`build/${name}.sha256`)]);
  if (!data.ok || !sum.ok) throw new Error(`build/${name} or its .sha256 is missing: run export.py first`);
  const bytes = new Uint8Array(await data.arrayBuffer());
  const digest = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)),
    (b) => b.toString(16).padStart(2, "0")).join("");
  if (digest !== (await sum.text()).trim().split(/\s+/)[0]) throw new Error(`build/${name} does not match its checksum`);
  return bytes;
}

function tensor(bytes, entry) {
  const Kind = ARRAYS[entry.dtype];
  const copy = bytes.slice(entry.offset, entry.offset + entry.bytes);  // aligned
  return new ort.Tensor(entry.dtype, new Kind(copy.buffer), entry.shape);
}

function draw(losses, total) {
  const g = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  g.clearRect(0, 0, w, h);
  const top = Math.max(...losses);
  g.strokeStyle = "#1f77b4";
  g.lineWidth = 2;
  g.beginPath();
  losses.forEach((l, i) => {
    const x = 10 + (i / Math.max(total - 1, 1)) * (w - 20);
    const y = h - 10 - (l / top) * (h - 20);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

async function main() {
  const steps = Number.parseInt(new URLSearchParams(location.search).get("steps") ?? "300", 10);
  const manifest = JSON.parse(new TextDecoder().decode(await verified("step.state.json")));
  const stateBytes = await verified(manifest.data);
  const state = Object.fromEntries(manifest.state.map((e) => [e.name, tensor(stateBytes, e)]));
  const irisMeta = JSON.parse(new TextDecoder().decode(await verified("iris.json")));
  const irisBytes = await verified("iris.bin");
  const x = tensor(irisBytes, irisMeta.x);
  const y = tensor(irisBytes, irisMeta.y);
  const session = await ort.InferenceSession.create(await verified("step.onnx"), { executionProviders: ["wasm"] });
  const losses = [];
  let draws = 0;
  for (let i = 0; i < steps; i++) {
    const out = await session.run({ ...state, x, y });
    for (const e of manifest.state) if (e.output) state[e.name] = out[e.output];
    losses.push(Number(out.loss.data[0]));
    if (i % 5 === 0 || i === steps - 1) {  // let the page draw as it trains
      draw(losses, steps);
      draws++;
      status.textContent = `step ${i + 1} of ${steps}: loss ${losses[i].toFixed(5)}`;
      await new Promise(requestAnimationFrame);
    }
  }
  status.textContent = `trained ${steps} steps: loss ${losses[0].toFixed(4)} → ${losses[steps - 1].toFixed(4)}`;
  window.paralens = { losses, draws };
}

main().catch((e) => {
  status.textContent = `error: ${e.message}`;
  window.paralens = { error: String(e.message ?? e) };
});
