// Lets Node resolve the host interfaces `lyceum:policy/{kv,log,config}@0.1.0` to the
// in-memory host in ./host, so the plugin's modules run unchanged under `node --test`.
import { register } from 'node:module';

register('./resolve.mjs', import.meta.url);
