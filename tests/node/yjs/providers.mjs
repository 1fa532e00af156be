// Real Yjs clients (y-websocket's WebsocketProvider) against a chronohub room, driven by
// tests/integration/test_collab_yjs.py. Each step prints one JSON line on stdout; the test
// answers on stdin when a step needs it. Every wait has a deadline, so nothing hangs.
//
//   node providers.mjs together <ws-url> <room> <token>   two providers edit, wait for the
//        Python client's edit ("go" on stdin), then a late joiner syncs
//   node providers.mjs write <ws-url> <room> <token> <text>   append text; done once a second
//        provider has it (the server broadcasts only what it has stored)
//   node providers.mjs read <ws-url> <room> <token>        print the room's text
//   node providers.mjs aware <ws-url> <room> <token> <ws-url-2>   one provider on each of two
//        hub processes: each sees the other's user, then one leaves and the other sees it go

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const [scenario, url, room, token, extra] = process.argv.slice(2)
const DEADLINE_MS = 15000

function say (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

function join (name, base = url) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(base + '/collab', room, doc, {
    WebSocketPolyfill: WebSocket,
    disableBc: true,
    params: { token }
  })
  provider.awareness.setLocalStateField('user', { name })
  return { doc, provider, text: doc.getText('t') }
}

async function until (what, check) {
  const started = Date.now()
  while (!check()) {
    if (Date.now() - started > DEADLINE_MS) {
      say('timeout', { waiting_for: what })
      process.exit(2)
    }
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

const synced = client => until('sync', () => client.provider.synced)

const lines = readline.createInterface({ input: process.stdin })
const nextLine = () => new Promise(resolve => lines.once('line', resolve))

if (scenario === 'together') {
  const a = join('node-a')
  const b = join('node-b')
  await synced(a)
  await synced(b)
  a.text.insert(0, 'A1 ')
  await until('B to see A', () => b.text.toString() === 'A1 ')
  b.text.insert(b.text.length, 'B1 ')
  await until('A to see B', () => a.text.toString() === 'A1 B1 ')
  await until('awareness of both', () =>
    a.provider.awareness.getStates().size >= 2 && b.provider.awareness.getStates().size >= 2)
  say('edited', { text: a.text.toString() })
  const expected = await nextLine()
  await until('the Python edit', () =>
    a.text.toString() === expected && b.text.toString() === expected)
  const late = join('node-late')
  await synced(late)
  await until('the late joiner to see everyone', () => late.provider.awareness.getStates().size >= 3)
  say('done', {
    a: a.text.toString(),
    b: b.text.toString(),
    late: late.text.toString(),
    users: [...late.provider.awareness.getStates().values()].map(s => s.user && s.user.name).sort()
  })
  for (const client of [a, b, late]) client.provider.destroy()
} else if (scenario === 'write') {
  const writer = join('node-writer')
  const witness = join('node-witness')
  await synced(writer)
  await synced(witness)
  writer.text.insert(writer.text.length, extra)
  const want = writer.text.toString()
  await until('the witness to see the write', () => witness.text.toString() === want)
  say('written', { text: want })
  writer.provider.destroy()
  witness.provider.destroy()
} else if (scenario === 'read') {
  const reader = join('node-reader')
  await synced(reader)
  say('read', { text: reader.text.toString() })
  reader.provider.destroy()
} else if (scenario === 'aware') {
  const names = client =>
    [...client.provider.awareness.getStates().values()].map(s => s.user && s.user.name).sort()
  // by client id: the hub shows each state under the name it authenticated, not the claimed one
  const sees = (client, other) => client.provider.awareness.getStates().has(other.doc.clientID)
  const a = join('node-a')
  const b = join('node-b', extra)
  await synced(a)
  await synced(b)
  await until('each to see the other', () => sees(a, b) && sees(b, a))
  say('aware', { a: names(a), b: names(b) })
  const started = Date.now()
  a.provider.destroy()
  await until('B to see A leave', () => !sees(b, a))
  say('left', { ms: Date.now() - started, b: names(b) })
  b.provider.destroy()
} else {
  say('usage', { error: `unknown scenario ${scenario}` })
  process.exit(64)
}
lines.close()
process.exit(0)
