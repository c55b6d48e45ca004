// Builds src/plugin.js into dist/{{name}}.wasm, a component of the `{{world}}` world.
//
//   node build.mjs [OUTPUT]

import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] || resolve(here, 'dist/{{name}}.wasm'));

const started = performance.now();
const { component } = await componentize({
  sourcePath: resolve(here, 'src/plugin.js'),
  witPath: resolve(here, 'wit'),
  worldName: '{{world}}',
  // Without this the engine imports WASI clocks, random, HTTP and stdio, and the server
  // refuses a plugin that imports anything but its world. Consequences: Date.now() and
  // timers are unavailable (use ctx.atUnixMs), Math.random() is deterministic, and
  // console output goes nowhere.
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
const seconds = ((performance.now() - started) / 1000).toFixed(1);
const mib = (component.byteLength / (1024 * 1024)).toFixed(1);
console.log(`built ${out} (${mib} MiB) in ${seconds} s`);
