// One cell of the shared notebook on the page: its toolbar, its prompt and state, its outputs,
// for markdown its rendering, and its editor (editor.ts: CodeMirror bound to the cell's shared
// Y.Text), which comes from a chunk of its own, built when the cell comes near the screen.

import type { YCodeCell, YCellType } from '@jupyter/ydoc'
import type { Awareness } from 'y-protocols/awareness'
import type * as Y from 'yjs'

import type { EditorView } from './editor'
import { markdown, renderOutputs, type Output } from './outputs'

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

// The editors' chunk, asked for as soon as this module runs (the page also preloads it): until
// it is here, cells show their source as text.
let editorModule: typeof import('./editor') | null = null
const editorLoaded = import('./editor').then(module => {
  performance.mark('chronohub:editors-loaded') // for bench/browser.py's breakdown
  editorModule = module
  // usually here before the room's content: warm CodeMirror up meanwhile
  if (waiting.length === 0) module.warmUp()
})

// Editors are built when their cell comes near the screen (or is focused): fifty CodeMirror
// views at once cost half a second of the page's start, and each one redraws its remote
// selections on every awareness change. Those near the screen are built a few at a time, in
// document order, yielding to the browser between batches: the first cells are editable (and
// painted) before the editors further down are built, and typing is never held up for long.
const waiting: CellView[] = []
let pumping = false
const BATCH_MS = 8

function pump (): void {
  const started = performance.now()
  while (waiting.length > 0 && performance.now() - started < BATCH_MS) waiting.shift()!.withEditor(() => {})
  pumping = waiting.length > 0
  if (pumping) setTimeout(pump, 0)
}

function buildSoon (view: CellView): void {
  if (!waiting.includes(view)) waiting.push(view)
  if (!pumping && editorModule !== null) {
    pumping = true
    pump()
  }
}
void editorLoaded.then(() => { if (!pumping && waiting.length > 0) { pumping = true; pump() } })

const nearScreen = new IntersectionObserver(entries => {
  for (const entry of entries) {
    const view = (entry.target as HTMLElement & { cellView?: CellView }).cellView
    if (view === undefined) continue
    if (entry.isIntersecting) buildSoon(view)
    else if (waiting.includes(view)) waiting.splice(waiting.indexOf(view), 1)
  }
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
    if (cell.cell_type === 'code') nearScreen.observe(this.editorBox)
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
    nearScreen.unobserve(this.editorBox)
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

  /** Redraw everything but the editor (the binding keeps that one current). */
  draw (): void {
    if (this.editor === null) this.placeholder.textContent = this.cell.ysource.toString()
    const index = this.el.parentElement ? [...this.el.parentElement.children].indexOf(this.el) + 1 : 0
    const kind = this.cell.cell_type === 'code' ? 'code' : this.cell.cell_type
    this.el.setAttribute('aria-label', `Cell ${index}, ${kind}`)
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
        this.rendered.innerHTML = source.trim() ? markdown(source) : '<p class="empty">Empty text cell</p>'
      }
    }
  }

  destroy (): void {
    this.destroyed = true
    if (waiting.includes(this)) waiting.splice(waiting.indexOf(this), 1)
    this.cell.ymodel.unobserveDeep(this.observer)
    nearScreen.unobserve(this.editorBox)
    this.editor?.destroy()
    this.el.remove()
  }
}
