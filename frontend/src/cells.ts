// One cell of the shared notebook on the page: its toolbar, its prompt and state, its outputs,
// for markdown its rendering, and its editor (editor.ts: CodeMirror bound to the cell's shared
// Y.Text), which comes from a chunk of its own, built when the cell comes near the screen.

import type { YCodeCell, YCellType } from '@jupyter/ydoc'
import type { Awareness } from 'y-protocols/awareness'
import type * as Y from 'yjs'

import type { EditorView } from './editor'
import { renderOutputs, setMarkup, type Output } from './outputs'

/** What a cell view asks of the page. */
export interface Actions {
  run (cell: YCellType): void
  /** Focus the cell ``step`` away from ``cell`` (past the end: a new one, if writable). */
  focusNext (cell: YCellType, step: 1 | -1): void
  move (cell: YCellType, step: 1 | -1): void
  remove (cell: YCellType): void
  insertAfter (cell: YCellType, type: 'code' | 'markdown'): void
}

function button (label: string, text: string, className: string, onClick: () => void): HTMLButtonElement {
  const el = document.createElement('button')
  el.type = 'button'
  el.className = `secondary outline ${className}`
  el.textContent = text
  el.setAttribute('aria-label', label)
  el.title = label
  el.addEventListener('click', onClick)
  return el
}

// The editors' chunk (the page preloads it): until it is here, cells show their source as text.
// Its evaluation is one long task (30-60 ms), so it is asked for after the first frame (the
// cells painted, and the websocket's handshake, begun with the script, answered meanwhile): the
// socket's open event, and with it the sync's first message, are not queued behind it. Or after
// 100 ms, if the page is not being rendered (a background tab has no frames).
let editorModule: typeof import('./editor') | null = null
const editorLoaded = new Promise<void>(resolve => {
  requestAnimationFrame(() => setTimeout(resolve, 0))
  setTimeout(resolve, 100)
}).then(async () => await import('./editor')).then(module => {
  performance.mark('chronohub:editors-loaded') // for bench/browser.py's breakdown
  editorModule = module
  schedule()
})

// Editors are built when their cell is on the screen or near it (or is focused): a CodeMirror
// view costs a few milliseconds to build and again to measure at the next frame, and fifty of
// them cost half a second of the page's start. On the page's start, the cells on the screen come
// first, in document order, a few at a time (BATCH_MS, then the browser paints): the first cells
// are editable before anything below the screen is built. Cells near the screen (those the
// browser lays out beyond its edges: content-visibility in chronohub.css) are built when the
// browser is idle, ready for scrolling.
const onScreen: CellView[] = []
const nearScreen: CellView[] = []
let scheduled = false
let painted = true // a frame was painted since the last batch (the observer reports after one)
const BATCH_MS = 8

function inOrder (views: CellView[]): void {
  // document order: the first cells are the ones read first
  views.sort((a, b) => a.el.compareDocumentPosition(b.el) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1)
}

function take (): CellView | undefined {
  return onScreen.shift() ?? nearScreen.shift()
}

function pump (deadline?: IdleDeadline): void {
  scheduled = false
  const started = performance.now()
  const budget = (): boolean => deadline !== undefined
    ? deadline.timeRemaining() > 1
    : performance.now() - started < BATCH_MS
  do {
    const view = take()
    if (view === undefined) break
    view.withEditor(() => {})
  } while (budget())
  painted = false
  schedule()
}

function schedule (): void {
  if (scheduled || editorModule === null) return
  if (onScreen.length > 0) {
    scheduled = true
    // the browser paints (and answers input) between batches: after the next frame, if none
    // was painted since the last batch
    if (painted) setTimeout(pump, 0)
    else requestAnimationFrame(() => setTimeout(pump, 0))
  } else if (nearScreen.length > 0) {
    scheduled = true
    requestIdleCallback(pump, { timeout: 500 })
  }
}

function forget (view: CellView): void {
  for (const queue of [onScreen, nearScreen]) {
    const at = queue.indexOf(view)
    if (at >= 0) queue.splice(at, 1)
  }
}

const watcher = new IntersectionObserver(entries => {
  painted = true
  for (const entry of entries) {
    const view = (entry.target as HTMLElement & { cellView?: CellView }).cellView
    if (view === undefined) continue
    forget(view)
    if (!entry.isIntersecting) continue
    const box = entry.boundingClientRect
    const visible = box.bottom > 0 && box.top < document.documentElement.clientHeight
    ;(visible ? onScreen : nearScreen).push(view)
  }
  inOrder(onScreen)
  inOrder(nearScreen)
  schedule()
}, { rootMargin: '100% 0px' })

export class CellView {
  readonly el: HTMLElement
  private editor: EditorView | null = null
  private readonly editorBox: HTMLElement
  private readonly placeholder: HTMLElement
  private readonly awareness: Awareness
  private readonly prompt: HTMLElement
  private readonly outputs: HTMLElement
  private readonly rendered: HTMLElement | null = null
  private editing = false
  private index = 0
  private destroyed = false
  private scheduled = false
  private readonly observer: (events: Array<Y.YEvent<any>>) => void
  // outputs are drawn again only when something else than the source changed: typing in a
  // cell must not rebuild (and re-sanitise) its outputs at every keystroke
  private outputsChanged = true

  constructor (
    readonly cell: YCellType,
    awareness: Awareness,
    private readonly writable: boolean,
    private readonly actions: Actions
  ) {
    const isCode = cell.cell_type === 'code'
    this.el = document.createElement('section')
    this.el.className = `cell cell-${cell.cell_type}`
    this.el.dataset.cellId = cell.id
    // a <section> with a name is a region: screen readers list the cells as landmarks

    const bar = document.createElement('div')
    bar.className = 'cell-bar'
    this.prompt = document.createElement('span')
    this.prompt.className = 'prompt'
    bar.append(this.prompt)
    if (writable) {
      const tools = document.createElement('span')
      tools.className = 'cell-tools'
      if (isCode) tools.append(button('Run this cell (Shift-Enter)', '▶ Run', 'run', () => actions.run(cell)))
      tools.append(
        button('Move this cell up', '↑', 'up', () => actions.move(cell, -1)),
        button('Move this cell down', '↓', 'down', () => actions.move(cell, 1)),
        button('Add a code cell below', '+ Code', 'add-code', () => actions.insertAfter(cell, 'code')),
        button('Add a text cell (markdown) below', '+ Text', 'add-markdown', () => actions.insertAfter(cell, 'markdown')),
        button('Delete this cell', '✕', 'delete', () => actions.remove(cell))
      )
      bar.append(tools)
    }

    this.awareness = awareness
    this.editorBox = document.createElement('div')
    this.editorBox.className = 'cell-editor'
    // the source as text until the editor is built; focusing it builds the editor
    this.placeholder = document.createElement('pre')
    this.placeholder.className = 'cell-source'
    this.placeholder.tabIndex = 0
    this.placeholder.setAttribute('aria-label', `${isCode ? 'Code' : 'Markdown'} cell source`)
    this.placeholder.addEventListener('focus', () => this.withEditor(editor => editor.focus()))
    this.editorBox.append(this.placeholder)
    ;(this.editorBox as HTMLElement & { cellView?: CellView }).cellView = this

    this.outputs = document.createElement('div')
    this.outputs.className = 'cell-outputs'
    this.outputs.setAttribute('aria-live', 'polite')
    this.el.append(bar, this.editorBox)
    if (cell.cell_type === 'markdown') {
      this.rendered = document.createElement('div')
      this.rendered.className = 'markdown-rendered'
      this.rendered.tabIndex = 0
      if (writable) this.rendered.title = 'Double-click or press Enter to edit'
      const edit = (): void => { if (this.writable) this.edit(true) }
      this.rendered.addEventListener('dblclick', edit)
      this.rendered.addEventListener('keydown', event => {
        if (event.key === 'Enter' && !event.shiftKey) { event.preventDefault(); edit() }
      })
      this.el.append(this.rendered)
    }
    if (isCode) this.el.append(this.outputs)

    // Remote edits, outputs, execution state: redrawn once per frame, whatever arrived.
    this.observer = events => {
      if (events.some(event => event.target !== cell.ysource)) this.outputsChanged = true
      this.schedule()
    }
    cell.ymodel.observeDeep(this.observer)
    this.draw()
    if (cell.cell_type === 'code') watcher.observe(this.editorBox)
  }

  /** Call ``use`` with the cell's editor, built on first use (once its chunk is here). */
  withEditor (use: (editor: EditorView) => void): void {
    if (this.editor !== null) {
      use(this.editor)
      return
    }
    if (editorModule === null) {
      void editorLoaded.then(() => { if (!this.destroyed) this.withEditor(use) })
      return
    }
    watcher.unobserve(this.editorBox)
    forget(this)
    const isCode = this.cell.cell_type === 'code'
    this.editor = editorModule.createEditor(this.cell.ysource, this.awareness, isCode, this.writable, {
      runAndAdvance: () => this.runAndAdvance(),
      runInPlace: () => this.runInPlace(),
      escape: () => this.el.focus(),
      leave: step => this.actions.focusNext(this.cell, step),
      blurred: () => {
        if (this.cell.cell_type === 'markdown' && this.editing) queueMicrotask(() => this.edit(false))
      }
    })
    this.placeholder.replaceWith(this.editor.dom)
    if (performance.getEntriesByName('chronohub:first-editor').length === 0) {
      performance.mark('chronohub:first-editor') // for bench/browser.py's breakdown
    }
    use(this.editor)
  }

  private runInPlace (): void {
    if (this.cell.cell_type === 'markdown') this.edit(false)
    else if (this.writable) this.actions.run(this.cell)
  }

  private runAndAdvance (): void {
    this.runInPlace()
    this.actions.focusNext(this.cell, 1)
  }

  /** Show the markdown source for editing (``on``) or its rendering. */
  edit (on: boolean): void {
    if (this.rendered === null) return
    this.editing = on
    this.draw()
    if (on) this.withEditor(editor => editor.focus())
  }

  focus (atEnd = false): void {
    if (this.rendered !== null && !this.editing) {
      this.rendered.focus()
      return
    }
    this.withEditor(editor => {
      editor.focus()
      const at = atEnd ? editor.state.doc.length : 0
      editor.dispatch({ selection: { anchor: at } })
    })
  }

  private schedule (): void {
    if (this.scheduled) return
    this.scheduled = true
    requestAnimationFrame(() => { this.scheduled = false; this.draw() })
  }

  /** The cell's place in the notebook (from 1), for its label. */
  place (index: number): void {
    if (index === this.index) return
    this.index = index
    this.label()
  }

  private label (): void {
    const kind = this.cell.cell_type === 'code' ? 'code' : this.cell.cell_type
    this.el.setAttribute('aria-label', `Cell ${this.index}, ${kind}`)
  }

  /** Redraw everything but the editor (the binding keeps that one current). */
  draw (): void {
    if (this.editor === null) this.placeholder.textContent = this.cell.ysource.toString()
    this.label()
    if (this.cell.cell_type === 'code') {
      const code = this.cell as YCodeCell
      const running = code.executionState === 'running'
      this.el.classList.toggle('running', running)
      this.el.dataset.state = running ? 'busy' : 'idle'
      this.prompt.textContent = running ? '[*]' : `[${code.execution_count ?? ' '}]`
      this.prompt.setAttribute('aria-label', running ? 'Running' : `Execution count ${code.execution_count ?? 'none'}`)
      if (this.outputsChanged) {
        this.outputsChanged = false
        renderOutputs(this.outputs, code.getOutputs() as unknown as Output[])
      }
    } else {
      this.prompt.textContent = this.cell.cell_type === 'markdown' ? 'Text' : 'Raw'
    }
    if (this.rendered !== null) {
      const showRendered = !this.editing
      this.rendered.hidden = !showRendered
      this.el.classList.toggle('editing', !showRendered)
      this.editorBox.hidden = showRendered
      if (showRendered) {
        const source = this.cell.ysource.toString()
        setMarkup(this.rendered, markup => source.trim() ? markup.markdown(source) : '<p class="empty">Empty text cell</p>')
      }
    }
  }

  destroy (): void {
    this.destroyed = true
    forget(this)
    this.cell.ymodel.unobserveDeep(this.observer)
    watcher.unobserve(this.editorBox)
    this.editor?.destroy()
    this.el.remove()
  }
}
