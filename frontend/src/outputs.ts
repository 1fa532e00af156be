// A code cell's outputs as DOM, from their nbformat JSON (what @jupyter/ydoc's getOutputs()
// returns). Outputs come from whatever code someone ran: every piece of markup goes through
// DOMPurify, text is set as text, ANSI colours go through ansi_up (which escapes HTML). Those
// libraries are a chunk of their own (markup.ts, preloaded by the page), asked for by the first
// element that needs them, which is drawn empty and filled when they are here (never with
// unsanitised markup): a notebook whose outputs are plain text does not run them at all.

type Multiline = string | string[]
export interface Output {
  output_type: string
  name?: string
  text?: Multiline
  data?: Record<string, unknown>
  ename?: string
  evalue?: string
  traceback?: string[]
}

// The richest representation first, as JupyterLab chooses.
const ORDER = [
  'text/html',
  'image/svg+xml',
  'image/png',
  'image/jpeg',
  'text/markdown',
  'application/json',
  'text/plain'
]

let markupModule: typeof import('./markup') | null = null
let markupLoaded: Promise<void> | null = null // asked for by the first element that needs it

/** Set ``el``'s content to ``html(markup)``: now if the markup chunk is here, else when it is. */
export function setMarkup (el: HTMLElement, html: (markup: typeof import('./markup')) => string): void {
  // ``el`` is tagged with its latest request: an earlier one still waiting for the chunk is dropped
  const tagged = el as HTMLElement & { markupRequest?: symbol }
  const request = Symbol('markup')
  tagged.markupRequest = request
  if (markupModule !== null) {
    el.innerHTML = html(markupModule)
    return
  }
  el.replaceChildren()
  markupLoaded ??= import('./markup').then(module => { markupModule = module })
  void markupLoaded.then(() => {
    if (tagged.markupRequest === request) el.innerHTML = html(markupModule!)
  })
}

function joined (value: unknown): string {
  if (Array.isArray(value)) return value.join('')
  return typeof value === 'string' ? value : ''
}

function utf8Base64 (text: string): string {
  let binary = ''
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte)
  return btoa(binary)
}


/** Text that may hold ANSI colours. Most has none: set as text, it needs neither ansi_up nor
 * DOMPurify (a notebook's hundred outputs drawn in a fraction of the time). */
function ansiText (className: string, text: string): HTMLElement {
  const el = document.createElement('pre')
  el.className = className
  if (text.includes('\x1b')) setMarkup(el, markup => markup.ansiHtml(text))
  else el.textContent = text
  return el
}

function rich (data: Record<string, unknown>): HTMLElement {
  const mime = ORDER.find(type => type in data)
  const box = document.createElement('div')
  box.className = 'output-rich'
  if (mime === undefined) {
    box.textContent = `[output of type ${Object.keys(data).join(', ') || 'none'}]`
    return box
  }
  box.dataset.mime = mime
  const value = data[mime]
  switch (mime) {
    case 'text/html':
      setMarkup(box, markup => markup.sanitize(joined(value)))
      break
    case 'image/svg+xml': {
      // As an image, not inline markup: an SVG's <style> and style= would restyle the whole
      // page (style-src allows inline styles), and its scripts would run in it. Inside <img>
      // the SVG is a separate document: neither reaches the page.
      const img = document.createElement('img')
      img.src = `data:image/svg+xml;base64,${utf8Base64(joined(value))}`
      img.alt = joined(data['text/plain']) || 'an image output'
      box.append(img)
      break
    }
    case 'image/png':
    case 'image/jpeg': {
      const img = document.createElement('img')
      img.src = `data:${mime};base64,${joined(value).replace(/\s/g, '')}`
      img.alt = joined(data['text/plain']) || 'an image output'
      box.append(img)
      break
    }
    case 'text/markdown':
      setMarkup(box, markup => markup.markdown(joined(value)))
      break
    case 'application/json': {
      const el = document.createElement('pre')
      el.textContent = JSON.stringify(value, null, 2)
      box.append(el)
      break
    }
    default:
      box.append(ansiText('output-text', joined(value)))
  }
  return box
}

/** One output's element. */
export function renderOutput (output: Output): HTMLElement {
  switch (output.output_type) {
    case 'stream':
      return ansiText(`output-stream ${output.name === 'stderr' ? 'stderr' : 'stdout'}`, joined(output.text))
    case 'error':
      return ansiText('output-error',
        (output.traceback ?? []).join('\n') || `${output.ename ?? 'Error'}: ${output.evalue ?? ''}`)
    case 'execute_result':
    case 'display_data':
      return rich(output.data ?? {})
    default: {
      const el = document.createElement('p')
      el.textContent = `[unknown output type ${output.output_type}]`
      return el
    }
  }
}

/** Replace ``box``'s content with ``outputs``. */
export function renderOutputs (box: HTMLElement, outputs: Output[]): void {
  box.replaceChildren(...outputs.map(renderOutput))
  box.hidden = outputs.length === 0
}
