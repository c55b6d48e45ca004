// {{name}}: a Lyceum file validation plugin.
//
// Refuses uploads by extension and by size. Configuration (in `plugins.toml`, or `config`
// in `cases.json`):
//
//   {"blockedExtensions": ["exe", "bat"], "maxBytes": 10485760}

import { parseConfig, reject } from './lyceum.js';

// Read once per instance: an instance's configuration never changes, and a new instance
// starts with fresh memory and reads it again.
let settings;

function currentSettings() {
  if (settings === undefined) {
    const raw = parseConfig();
    const blockedExtensions = Array.isArray(raw.blockedExtensions)
      ? raw.blockedExtensions
          .filter((e) => typeof e === 'string')
          .map((e) => e.replace(/^\.+/, '').toLowerCase())
          .filter((e) => e !== '')
      : [];
    // Sizes are u64, BigInts in JavaScript. No limit without a positive `maxBytes`.
    const maxBytes =
      Number.isInteger(raw.maxBytes) && raw.maxBytes > 0 ? BigInt(raw.maxBytes) : undefined;
    settings = { blockedExtensions, maxBytes };
  }
  return settings;
}

/** The part of the name after its last dot, lowercased. */
function extension(name) {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? undefined : name.slice(dot + 1).toLowerCase();
}

function tooLarge(size) {
  const { maxBytes } = currentSettings();
  if (maxBytes !== undefined && size !== undefined && BigInt(size) > maxBytes) {
    return reject('too_large', 'This file is larger than allowed.');
  }
  return undefined;
}

/** Accepted as it is: no other folder, no other name. */
function accept() {
  return { tag: 'accept', val: { folder: undefined, name: undefined } };
}

export const files = {
  precheck(ctx, upload) {
    const ext = extension(upload.name);
    if (ext !== undefined && currentSettings().blockedExtensions.includes(ext)) {
      return reject('type_not_allowed', 'Files of this type are not accepted.');
    }
    // Refused before a byte is kept, when the client says how large it is.
    return tooLarge(upload.declaredSize) ?? accept();
  },

  finish(ctx, upload) {
    // A client may declare no size, or a false one: the real size decides.
    return tooLarge(upload.size) ?? accept();
  },
};
