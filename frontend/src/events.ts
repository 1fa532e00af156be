// Live follow for the audit timeline (/hub/events): the page works without this script; with
// it, events that the SSE stream (/hub/api/events/stream, the login cookie authenticates it)
// announces appear at the top, with the page's filters (the stream's URL carries them).
//
// The rows themselves come from the hub (/hub/events/rows for the announced positions): one
// server-side template renders every row, escaped, so this script never builds markup from
// event data. No library: EventSource, fetch and the DOM are enough. An entry of the bundle
// (build.mjs), linked by its hashed name through the manifest like the notebook page's.

interface AnnouncedEvent {
  position: number
  type: string
}

const RETRY_MS = 5000 // after the stream is refused or closed for good
const BATCH_MS = 50 // events announced within this are fetched together
const MAX_ROWS = 500 // rows kept on the page; older ones are reached by "Older events"

function element<T extends HTMLElement> (id: string): T {
  const found = document.getElementById(id)
  if (found === null) throw new Error(`the page has no #${id}`)
  return found as T
}

const list = element<HTMLOListElement>('timeline')
const toggle = element<HTMLInputElement>('live')
const statusLine = element('live-status')

/** The checkpoint the stream resumes after: the page's, then each event's id. */
let lastId = list.dataset.after ?? ''
let source: EventSource | null = null
const pending = new Set<number>()
let batchTimer: number | undefined
let retryTimer: number | undefined

function say (text: string): void {
  statusLine.textContent = text
}

function follow (): void {
  unfollow()
  const url = new URL(list.dataset.stream ?? '', window.location.href)
  if (lastId !== '') url.searchParams.set('after', lastId)
  // Sent by the browser with the login cookie (same origin); on a dropped connection it
  // reconnects by itself with Last-Event-ID, which the hub prefers over ?after=.
  const stream = new EventSource(url)
  source = stream
  stream.onopen = () => { say('following') }
  stream.onmessage = (message: MessageEvent<string>) => {
    lastId = message.lastEventId !== '' ? message.lastEventId : lastId
    const event = JSON.parse(message.data) as AnnouncedEvent
    if (document.getElementById(`event-${event.position}`) === null) pending.add(event.position)
    if (batchTimer === undefined) batchTimer = window.setTimeout(() => { void fetchRows() }, BATCH_MS)
  }
  stream.onerror = () => {
    if (stream.readyState === EventSource.CLOSED) {
      // Refused (signed out, no scope) or ended for good: try again a little later.
      say('disconnected; retrying')
      source = null
      retryTimer = window.setTimeout(() => { if (toggle.checked) follow() }, RETRY_MS)
    } else {
      say('reconnecting')
    }
  }
}

function unfollow (): void {
  window.clearTimeout(retryTimer)
  source?.close()
  source = null
}

async function fetchRows (): Promise<void> {
  batchTimer = undefined
  if (pending.size === 0) return
  const positions = [...pending]
  pending.clear()
  const url = new URL(list.dataset.rows ?? '', window.location.href)
  url.searchParams.set('from_position', String(Math.min(...positions)))
  url.searchParams.set('to_position', String(Math.max(...positions)))
  const response = await fetch(url, { credentials: 'same-origin' })
  if (!response.ok) {
    say(`could not load new events (${response.status})`)
    return
  }
  const template = document.createElement('template')
  template.innerHTML = await response.text() // the hub's own escaped markup
  for (const row of [...template.content.children] as HTMLLIElement[]) insert(row)
  document.getElementById('no-events')?.remove()
  while (list.children.length > MAX_ROWS) list.lastElementChild?.remove()
}

/** Put ``row`` in position order (newest first): at the top unless it committed late. */
function insert (row: HTMLLIElement): void {
  if (document.getElementById(row.id) !== null) return
  const position = Number(row.dataset.position)
  row.classList.add('new')
  for (const other of [...list.children] as HTMLLIElement[]) {
    if (Number(other.dataset.position) < position) {
      list.insertBefore(row, other)
      return
    }
  }
  list.append(row)
}

toggle.addEventListener('change', () => {
  if (toggle.checked) {
    follow()
  } else {
    unfollow()
    say('paused')
  }
})
;(toggle.closest('.live') as HTMLElement).hidden = false
if (toggle.checked) follow()
