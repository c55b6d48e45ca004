import { host } from './state.mjs';

export function getJson() {
  return host.configJson;
}

export function get(key) {
  const value = JSON.parse(host.configJson)[key];
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : JSON.stringify(value);
}
