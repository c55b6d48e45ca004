import { host } from './state.mjs';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

export function log(level, message) {
  if (!LEVELS.includes(level)) throw new TypeError(`invalid enum value ${level}`);
  if (typeof message !== 'string') throw new TypeError('expected a string');
  host.lines.push({ level, message });
}
