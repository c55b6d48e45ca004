// What the server's side of the three interfaces holds, for one test at a time. The types
// are those componentize-js hands a component: BigInts for 64-bit integers, `undefined`
// for an absent option, errors thrown with the `kv-error` as `payload`.

export const host = {
  configJson: '{}',
  lines: [],
  store: new Map(),
  now: 0n,
  failure: undefined,

  reset({ configJson = '{}', now = 0n } = {}) {
    this.configJson = configJson;
    this.lines = [];
    this.store = new Map();
    this.now = now;
    this.failure = undefined;
  },
};

export class ComponentError extends Error {
  constructor(payload) {
    super(`${JSON.stringify(payload)} (see error.payload)`);
    this.payload = payload;
  }
}
