// Bundles src/main.ts into ../agent/run/web_static/app.js and copies the page, its stylesheet and its icon there.
// Deterministic: the same sources and lockfile give the same bytes (no sourcemap, no timestamps).
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'agent', 'run', 'web_static');
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(here, 'src', 'main.ts')],
  outfile: join(out, 'app.js'),
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'es2020',
  minify: true,
  sourcemap: false,
  legalComments: 'eof',
  logLevel: 'warning',
});
for (const file of ['index.html', 'style.css', 'favicon.svg']) {
  copyFileSync(join(here, file), join(out, file));
}
