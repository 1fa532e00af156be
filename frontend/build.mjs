// Builds the hub's browser bundle into hub/web/static/app/: content-hashed file names (the hub
// serves them with a year-long, immutable Cache-Control) and manifest.json, which maps each
// entry's plain name to its hashed file and to the chunks it loads (the templates link the
// hashed name through it, and preload the chunks: <link rel="modulepreload">).
//
// Code splitting: what an entry imports with import() (the notebook's CodeMirror editors) and
// what entries share are chunks of their own, so a page runs its first script sooner.
//
//   node build.mjs            production build (minified)
//   node build.mjs --dev      unminified, with inline source maps

import * as esbuild from 'esbuild'
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, gzipSync } from 'node:zlib'

const here = path.dirname(fileURLToPath(import.meta.url))
const outdir = path.resolve(here, '..', 'hub', 'web', 'static', 'app')
const dev = process.argv.includes('--dev')
// One entry per page that has script; each page links its entry through the manifest.
const entries = {
  notebook: path.join(here, 'src', 'notebook.ts'),
  events: path.join(here, 'src', 'events.ts'),
  // the hub-stats service's chart (examples/hub-stats), served by the hub for the service's page
  stats: path.join(here, 'src', 'stats.ts')
}

// A stale bundle left beside the new one would be served forever by its hashed name: start clean.
await rm(outdir, { recursive: true, force: true })
await mkdir(outdir, { recursive: true })

const result = await esbuild.build({
  entryPoints: entries,
  outdir,
  bundle: true,
  format: 'esm',
  splitting: true,
  target: ['chrome110', 'firefox110', 'safari16'],
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  minify: !dev,
  sourcemap: dev ? 'inline' : false,
  metafile: true,
  legalComments: 'linked',
  // a library's stylesheet comes as text, added to the page by the script that needs it
  loader: { '.css': 'text' },
  logLevel: 'warning'
})

// Every chunk an output loads, statically or with import(), transitively: the page preloads
// them all, so the browser fetches and compiles them in parallel instead of one after the other.
const outputs = result.metafile.outputs
function chunksOf (file, seen = new Set()) {
  for (const { path: chunk, kind } of outputs[file].imports) {
    if ((kind === 'import-statement' || kind === 'dynamic-import') && !seen.has(chunk) && outputs[chunk]) {
      seen.add(chunk)
      chunksOf(chunk, seen)
    }
  }
  return seen
}
const manifest = {}
for (const [file, meta] of Object.entries(outputs)) {
  if (!meta.entryPoint) continue
  const name = Object.keys(entries).find(key => path.resolve(meta.entryPoint) === entries[key])
  if (name === undefined) continue // a module loaded with import(): a chunk, not a page's entry
  manifest[`${name}.js`] = { file: path.basename(file), preload: [...chunksOf(file)].map(chunk => path.basename(chunk)).sort() }
}
await writeFile(path.join(outdir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n')

// Compressed twins: aiohttp's static files answer with file.js.br or file.js.gz when the
// browser accepts them (a quarter of the bytes on the wire).
for (const file of Object.keys(result.metafile.outputs).filter(name => name.endsWith('.js'))) {
  const content = await readFile(file)
  await writeFile(`${file}.gz`, gzipSync(content, { level: 9 }))
  await writeFile(`${file}.br`, brotliCompressSync(content))
}
console.log(`built ${(await readdir(outdir)).length} files into ${path.relative(process.cwd(), outdir)}`)
