// The hub-stats service's chart (examples/hub-stats): its page carries the figures of the period
// as a JSON data block; this entry draws them with uPlot, a small chart library, in place of
// the server-drawn SVG, which stays on the page for browsers without script. The hub serves
// this entry (hashed, through its manifest) and the service's page links it under the hub's own
// address: the proxy puts both on one origin.

import uPlot from 'uplot'
import css from 'uplot/dist/uPlot.min.css'

interface ChartData {
  buckets: string[] // ISO times, the start of each bucket
  series: Record<string, number[]> // counts per bucket, per series
  colours: Record<string, string>
  label: string // what the chart shows, for screen readers
}

function byId (id: string): HTMLElement {
  const found = document.getElementById(id)
  if (found === null) throw new Error(`the page has no #${id}`)
  return found
}

const REFRESH_MS = 30_000 // as the page's own refresh without script

const data = JSON.parse(byId('chart-data').textContent ?? '{}') as ChartData
const box = byId('chart')

const style = document.createElement('style')
style.textContent = css
document.head.append(style)

const kinds = Object.keys(data.series)

function columnsOf (figures: ChartData): uPlot.AlignedData {
  return [figures.buckets.map(iso => Date.parse(iso) / 1000), ...kinds.map(kind => figures.series[kind] ?? [])]
}

function options (width: number): uPlot.Options {
  return {
    width,
    height: 240,
    title: undefined,
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
    axes: [{}, { label: 'count', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }],
    series: [
      { label: 'time' },
      ...kinds.map(kind => ({
        label: kind,
        stroke: data.colours[kind] ?? '#666',
        width: 2,
        points: { show: true, size: 5 },
        paths: uPlot.paths.stepped?.({ align: 1 })
      }))
    ]
  }
}

box.setAttribute('role', 'figure')
box.setAttribute('aria-label', data.label)
const chart = new uPlot(options(Math.max(280, box.clientWidth)), columnsOf(data), box)
byId('chart-svg').remove() // the script's chart replaces the fallback

new ResizeObserver(() => {
  chart.setSize({ width: Math.max(280, box.clientWidth), height: 240 })
}).observe(box)

/** The page again, from the service: its figures, period line and chart data replace these
 * (the service's own escaped markup, as the page itself). */
async function refresh (): Promise<void> {
  const response = await fetch(location.href, { headers: { Accept: 'text/html' } })
  if (!response.ok) return
  const fresh = new DOMParser().parseFromString(await response.text(), 'text/html')
  for (const id of ['figures', 'period', 'last-event']) {
    const next = fresh.getElementById(id)
    if (next !== null) byId(id).replaceWith(document.adoptNode(next))
  }
  const next = JSON.parse(fresh.getElementById('chart-data')?.textContent ?? 'null') as ChartData | null
  if (next !== null) {
    chart.setData(columnsOf(next))
    box.setAttribute('aria-label', next.label)
  }
}
setInterval(() => { void refresh().catch(() => {}) }, REFRESH_MS)

// What the tests (and curious people) can look at.
Object.assign(window, { hubStatsChart: chart })
