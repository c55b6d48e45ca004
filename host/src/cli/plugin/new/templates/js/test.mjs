// Runs every case of cases.json through the Lyceum server's own plugin runtime, offline:
// `lyceum plugin test` on the built component (`npm test` builds it first). `lyceum` must be
// on PATH, or LYCEUM_BIN must name it.

import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const lyceum = process.env.LYCEUM_BIN || 'lyceum';
const result = spawnSync(
  lyceum,
  ['plugin', 'test', 'dist/{{name}}.wasm', '--slot', '{{slot}}', '--cases', 'cases.json'],
  { cwd: dirname(fileURLToPath(import.meta.url)), stdio: 'inherit' },
);
if (result.error) {
  console.error(`cannot run \`${lyceum}\` (${result.error.code}): put lyceum on PATH, or set LYCEUM_BIN to its path`);
  process.exit(2);
}
process.exit(result.status ?? 1);
