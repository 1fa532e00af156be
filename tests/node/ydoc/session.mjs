// JupyterLab's notebook model (@jupyter/ydoc's YNotebook) synced over a real y-websocket
// provider to a chronohub session's room, driven by tests/integration/test_collab_session_ydoc.py.
// Each step prints one JSON line on stdout. Every wait has a deadline, so nothing hangs.
//
//   node session.mjs watch <ws-url> <room> <token> <cell-id> <expected> <edit-cell-id> <text>
//        sync; print the cells; set the source of <edit-cell-id> to <text>; then wait until
//        <cell-id>'s outputs hold <expected> (an execution somebody else asked for)
//   node session.mjs read <ws-url> <room> <token>    sync and print the cells

import { YNotebook } from '@jupyter/ydoc'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [scenario, url, room, token, cellId, expected, editId, editText] = process.argv.slice(2)
const DEADLINE_MS = 30000

function say (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

async function until (what, check) {
  const started = Date.now()
  while (!check()) {
    if (Date.now() - started > DEADLINE_MS) {
      say('timeout', { waiting_for: what })
      process.exit(2)
    }
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

function outputText (cell) {
  return (cell.toJSON().outputs || []).map(output => {
    if (output.output_type === 'stream') return [].concat(output.text).join('')
    if (output.data && output.data['text/plain']) return [].concat(output.data['text/plain']).join('')
    return ''
  }).join('')
}

const cells = nb => nb.cells.map(cell => cell.toJSON())

const nb = new YNotebook()
const provider = new WebsocketProvider(url + '/collab', room, nb.ydoc, {
  WebSocketPolyfill: WebSocket,
  disableBc: true,
  params: { token }
})
await until('sync', () => provider.synced)
await until('the notebook', () => nb.cells.length > 0)
say('synced', { cells: cells(nb), nbformat: nb.nbformat })

if (scenario === 'watch') {
  const edited = nb.cells.find(cell => cell.id === editId)
  edited.setSource(editText)
  say('edited')
  const watched = () => nb.cells.find(cell => cell.id === cellId)
  await until('the outputs', () => watched() && outputText(watched()).includes(expected))
  await until('the end of the execution', () => watched().executionState === 'idle')
  say('outputs', {
    text: outputText(watched()),
    execution_count: watched().execution_count,
    state: watched().executionState
  })
}
provider.destroy()
process.exit(0)
