// The collaborative notebook page, /hub/sessions/{id}: a shared execution session's room joined
// with y-websocket (the login cookie authenticates it: the page connects under /hub/collab/,
// where the cookie is sent), read as JupyterLab's notebook model (@jupyter/ydoc's YNotebook,
// the schema the room holds). Cells run through the document (the room's execution_requests
// map, collab/execution.py); interrupt and restart through the sessions API, with the XSRF
// token the page carries.

import { YNotebook, type YCellType } from '@jupyter/ydoc'
import { WebsocketProvider } from 'y-websocket'

import { CellView, type Actions } from './cells'

interface Config {
  session_id: string
  room: string
  user: string
  can_write: boolean
  xsrf: string
  api: string
  ws_path: string
}

const REQUESTS = 'execution_requests'
// Colours readable on light and dark backgrounds; y-codemirror.next wants #rrggbb.
const COLOURS = ['#d1495b', '#2e86ab', '#3f8f29', '#b5651d', '#8e44ad', '#c2185b', '#00838f', '#6d4c41']

function colourOf (name: string): string {
  let hash = 0
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)!) >>> 0
  return COLOURS[hash % COLOURS.length]
}

function byId<T extends HTMLElement> (id: string): T {
  const el = document.getElementById(id)
  if (el === null) throw new Error(`the page has no #${id}`)
  return el as T
}

const config = JSON.parse(byId('session-config').textContent ?? '{}') as Config
const status = byId('status')
const connection = byId('connection')
const kernel = byId('kernel')
const people = byId('people')
const cellsBox = byId('cells')

function say (message: string): void {
  status.textContent = message
}

const nb = new YNotebook({ disableDocumentWideUndoRedo: true })
const wsBase = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${config.ws_path}`
const provider = new WebsocketProvider(wsBase, config.room, nb.ydoc, {
  awareness: nb.awareness,
  disableBc: true // another tab of this browser is just another participant, through the hub
})
nb.awareness.setLocalStateField('user', { name: config.user, color: colourOf(config.user) })

// Yjs encodes each transaction's changes as an update message whenever the document has an
// 'update' listener, and the provider, its only one, sends those of local changes and drops
// the rest: the room's whole content arriving with the sync (27 KB for 50 cells, 10-25 ms of the
// page's start in a cold engine) and every remote keystroke were encoded for nothing. So the
// provider listens only while a local transaction ends: Yjs looks for 'update' listeners right
// after 'afterTransactionCleanup'.
const sendLocal = provider._updateHandler
nb.ydoc.off('update', sendLocal)
nb.ydoc.on('afterTransactionCleanup', transaction => {
  if (transaction.origin === provider) nb.ydoc.off('update', sendLocal)
  else nb.ydoc.on('update', sendLocal)
})

provider.on('status', ({ status: state }: { status: string }) => {
  if (state === 'connected') performance.mark('chronohub:connected')
  connection.textContent = state === 'connected' ? 'connected' : state === 'connecting' ? 'reconnecting…' : 'offline'
  connection.dataset.state = state
  document.body.dataset.connection = state
})
provider.on('sync', (synced: boolean) => {
  if (synced) {
    performance.mark('chronohub:synced') // for bench/browser.py's breakdown
    draw()
    performance.mark('chronohub:drawn')
    editFirstSoon()
  }
  document.body.dataset.synced = String(synced)
})
performance.mark('chronohub:started')

// --- cells -------------------------------------------------------------------------------------

const views = new Map<YCellType, CellView>()
let requestCounter = 0

function requestId (): string {
  // Requests written in one update run in the order of their ids: zero-padded counter.
  requestCounter += 1
  const random = Math.random().toString(36).slice(2, 8)
  return `web-${Date.now().toString(36)}-${String(requestCounter).padStart(6, '0')}-${random}`
}

function run (cells: YCellType[]): void {
  const code = cells.filter(cell => cell.cell_type === 'code')
  if (!config.can_write || code.length === 0) return
  const requests = nb.ydoc.getMap(REQUESTS)
  nb.ydoc.transact(() => {
    for (const cell of code) requests.set(requestId(), { cell_id: cell.id })
  })
}

function indexOf (cell: YCellType): number {
  return nb.cells.indexOf(cell)
}

const actions: Actions = {
  run: cell => run([cell]),
  focusNext (cell, step) {
    const index = indexOf(cell) + step
    if (index >= nb.cells.length && config.can_write && step === 1) {
      nb.insertCell(nb.cells.length, { cell_type: 'code', source: '' })
    }
    const next = nb.cells[index]
    if (next !== undefined) {
      draw()
      views.get(next)?.focus(step === -1)
    }
  },
  move (cell, step) {
    const from = indexOf(cell)
    const to = from + step
    if (to < 0 || to >= nb.cells.length) return
    nb.moveCell(from, to)
    draw()
    views.get(nb.cells[to])?.el.querySelector<HTMLButtonElement>(step === 1 ? '.down' : '.up')?.focus()
  },
  remove (cell) {
    const index = indexOf(cell)
    if (index >= 0) nb.deleteCell(index)
  },
  insertAfter (cell, type) {
    const index = indexOf(cell) + 1
    nb.insertCell(index, { cell_type: type, source: '' })
    draw()
    views.get(nb.cells[index])?.edit(true)
    views.get(nb.cells[index])?.focus()
  }
}

/** Make the cells' views match the document's cells, in order, reusing what is still there. */
function draw (): void {
  const present = new Set(nb.cells)
  for (const [cell, view] of views) {
    if (!present.has(cell)) {
      view.destroy()
      views.delete(cell)
    }
  }
  nb.cells.forEach((cell, index) => {
    let view = views.get(cell)
    if (view === undefined) {
      view = new CellView(cell, nb.awareness, config.can_write, actions)
      views.set(cell, view)
    }
    if (cellsBox.children[index] !== view.el) cellsBox.insertBefore(view.el, cellsBox.children[index] ?? null)
    view.place(index + 1) // each view draws itself when its cell changes: only its place is new here
  })
  byId('empty').hidden = nb.cells.length > 0 || !document.body.dataset.synced
  drawKernel()
}

let firstEdited = false

/** The first code cell, the one most likely to be edited first, gets its editor as soon as
 * the notebook is drawn (or the editors' chunk is here), in the same task: not a frame later,
 * once the browser has laid the cells out and reported which are on the screen. */
function editFirstSoon (): void {
  if (firstEdited) return
  firstEdited = true
  const first = nb.cells.find(cell => cell.cell_type === 'code')
  if (first !== undefined) views.get(first)?.withEditor(() => {})
}

nb.changed.connect((_sender, change) => {
  if (change.cellsChange !== undefined) draw()
})

function drawKernel (): void {
  const busy = nb.cells.some(cell => cell.cell_type === 'code' && (cell as { executionState?: string }).executionState === 'running')
  kernel.textContent = busy ? 'busy' : 'idle'
  kernel.dataset.state = busy ? 'busy' : 'idle'
}
nb.ydoc.on('afterTransaction', () => { drawKernel() })

// --- who is here ---------------------------------------------------------------------------

function drawPeople (): void {
  const seen = new Map<string, string>()
  for (const state of nb.awareness.getStates().values()) {
    const user = state.user as { name?: unknown, color?: unknown } | undefined
    if (user === undefined || typeof user.name !== 'string') continue
    seen.set(user.name, typeof user.color === 'string' ? user.color : colourOf(user.name))
  }
  people.replaceChildren(...[...seen].sort().map(([name, colour]) => {
    const li = document.createElement('li')
    li.className = 'person'
    li.dataset.name = name
    const dot = document.createElement('span')
    dot.className = 'dot'
    dot.style.backgroundColor = colour
    dot.setAttribute('aria-hidden', 'true')
    li.append(dot, name === config.user ? `${name} (you)` : name)
    return li
  }))
}
nb.awareness.on('change', drawPeople)
drawPeople()

// --- the session's controls ----------------------------------------------------------------------

async function call (action: 'interrupt' | 'restart'): Promise<void> {
  say(action === 'interrupt' ? 'Interrupting…' : 'Restarting the kernel…')
  try {
    const response = await fetch(`${config.api}/${action}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'X-XSRFToken': config.xsrf, Accept: 'application/json' }
    })
    const body = await response.json().catch(() => ({})) as { message?: string }
    say(response.ok ? (action === 'interrupt' ? 'Interrupted.' : 'The kernel restarted.')
      : `Could not ${action}: ${body.message ?? response.statusText}`)
  } catch (error) {
    say(`Could not ${action}: ${String(error)}`)
  }
}

if (config.can_write) {
  byId('run-all').addEventListener('click', () => run(nb.cells))
  byId('interrupt').addEventListener('click', () => { void call('interrupt') })
  byId('restart').addEventListener('click', () => { void call('restart') })
  byId('add-cell').addEventListener('click', () => {
    nb.insertCell(nb.cells.length, { cell_type: 'code', source: '' })
    draw()
    views.get(nb.cells[nb.cells.length - 1])?.focus()
  })
}

// What the tests (and curious people) can look at: the document and the provider.
Object.assign(window, { chronohub: { nb, provider } })
