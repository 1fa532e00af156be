// The collaboration benchmark's client driver (bench/collab.py runs it): the same driver for
// every server. Prints one JSON line. Loopback only; every phase stops by count and deadline.
//
//   node driver.mjs fanout  <room-url> <clients> <updates>   1 writer, clients-1 readers: a burst
//        (once every client is in, it prints "connected" and waits for a line on stdin: the
//        caller reads the server's CPU time then, and again when the result comes; the
//        result has the driver's own CPU time over the burst too)
//   node driver.mjs latency <room-url> <clients> <rate> <samples>   steady rate, one reader
//        applies the updates (yjs) and times each; the other readers count frames
//   node driver.mjs rooms   <base-url> <count> <query>        open <count> rooms, one small edit
//        each, then leave them idle
//
// <room-url> is ws://host:port/<path>/<room>?<query>; a writer's updates are one-element
// Y.Array pushes, sent as y-websocket Update messages.

import WebSocket from 'ws'
import * as Y from 'yjs'

const DEADLINE_MS = 180000
const [mode, ...args] = process.argv.slice(2)

function varUint (n) {
  const out = []
  while (n > 0x7f) { out.push(0x80 | (n & 0x7f)); n >>>= 7 }
  out.push(n)
  return Buffer.from(out)
}

const updateFrame = update => Buffer.concat([Buffer.from([0, 2]), varUint(update.length), update])

function makeUpdates (count) {
  const doc = new Y.Doc()
  const updates = []
  doc.on('update', update => updates.push(updateFrame(update)))
  const array = doc.getArray('a')
  for (let i = 0; i < count; i++) array.push([i])
  return updates
}

// Open a socket and wait for the server's first message (its SyncStep1): then it is in the room.
function connect (url, onMessage) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    ws.binaryType = 'nodebuffer'
    let first = true
    const timer = setTimeout(() => reject(new Error('connect timeout ' + url)), 30000)
    ws.on('message', data => {
      if (first) { first = false; clearTimeout(timer); resolve(ws) }
      onMessage(data)
    })
    ws.on('error', reject)
  })
}

const isUpdate = data => data[0] === 0 && data[1] === 2

function quantile (sorted, q) {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

async function fanout (url, clients, count) {
  const updates = makeUpdates(count)
  const readers = clients - 1
  const received = new Array(readers).fill(0)
  let done = 0
  let finish
  const finished = new Promise(resolve => { finish = resolve })
  const sockets = []
  for (let r = 0; r < readers; r++) {
    sockets.push(await connect(url, data => {
      if (isUpdate(data) && ++received[r] === count && ++done === readers) finish()
    }))
  }
  const writer = await connect(url, () => {})
  process.stdout.write('connected\n')
  await new Promise(resolve => process.stdin.once('data', resolve))
  process.stdin.pause()
  const started = performance.now()
  const cpuBefore = process.cpuUsage()
  for (const frame of updates) writer.send(frame)
  const timeout = new Promise(resolve => setTimeout(resolve, DEADLINE_MS))
  await Promise.race([finished, timeout])
  const seconds = (performance.now() - started) / 1000
  const cpu = process.cpuUsage(cpuBefore)
  const delivered = received.reduce((a, b) => a + b, 0)
  for (const ws of [...sockets, writer]) ws.terminate()
  return {
    clients,
    updates: count,
    complete: done === readers,
    delivered,
    seconds,
    deliveries_per_s: delivered / seconds,
    // the driver's own CPU time over the burst: near `seconds`, the driver (not the server)
    // bounds the rate
    driver_cpu_s: (cpu.user + cpu.system) / 1e6
  }
}

async function latency (url, clients, rate, samples) {
  const updates = makeUpdates(samples)
  const sentAt = new Array(samples)
  const latencies = []
  const doc = new Y.Doc()
  doc.getArray('a').observe(event => {
    const now = performance.now()
    for (const delta of event.changes.delta) {
      for (const i of delta.insert || []) latencies.push(now - sentAt[i])
    }
  })
  const timed = await connect(url, data => { if (isUpdate(data)) Y.applyUpdate(doc, decodeUpdate(data)) })
  const others = []
  for (let r = 0; r < clients - 2; r++) others.push(await connect(url, () => {}))
  const writer = await connect(url, () => {})
  const started = performance.now()
  for (let i = 0; i < samples; i++) {
    const due = started + (i * 1000) / rate
    const wait = due - performance.now()
    if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
    sentAt[i] = performance.now()
    writer.send(updates[i])
  }
  const deadline = performance.now() + 10000
  while (latencies.length < samples && performance.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  for (const ws of [timed, ...others, writer]) ws.terminate()
  // The first second warms the connections up; the rest is measured.
  const kept = latencies.slice(rate).sort((a, b) => a - b)
  return {
    clients,
    rate,
    samples: kept.length,
    lost: samples - latencies.length,
    p50_ms: quantile(kept, 0.5),
    p99_ms: quantile(kept, 0.99)
  }
}

function decodeUpdate (data) {
  let pos = 2
  let length = 0
  let shift = 0
  for (;;) {
    const byte = data[pos++]
    length |= (byte & 0x7f) << shift
    if (byte < 0x80) break
    shift += 7
  }
  return data.subarray(pos, pos + length)
}

async function rooms (base, count, query) {
  const started = performance.now()
  const concurrency = 16
  let next = 0
  async function worker () {
    while (next < count) {
      const i = next++
      const url = `${base}/idle-${i}${query ? '?' + query : ''}`
      const ws = await connect(url, () => {})
      ws.send(makeUpdates(1)[0])
      await new Promise(resolve => setTimeout(resolve, 20))
      ws.close()
      await new Promise(resolve => ws.once('close', resolve))
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return { rooms: count, seconds: (performance.now() - started) / 1000 }
}

let result
if (mode === 'fanout') result = await fanout(args[0], Number(args[1]), Number(args[2]))
else if (mode === 'latency') result = await latency(args[0], Number(args[1]), Number(args[2]), Number(args[3]))
else if (mode === 'rooms') result = await rooms(args[0], Number(args[1]), args[2])
else { console.error('unknown mode ' + mode); process.exit(64) }
process.stdout.write(JSON.stringify(result) + '\n')
process.exit(0)
