const HOST = /^lyceum:policy\/(kv|log|config)@0\.1\.0$/;

export async function resolve(specifier, context, nextResolve) {
  const match = HOST.exec(specifier);
  if (match) {
    return { url: new URL(`./host/${match[1]}.mjs`, import.meta.url).href, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
