// A cell's CodeMirror editor bound to its shared Y.Text (y-codemirror.next: remote cursors and
// selections in each person's colour come from awareness). CodeMirror and its Python grammar
// are more than half of the page's script, so this module is a chunk of its own, loaded by
// cells.ts with import(): the notebook's structure, markdown and outputs are drawn from the
// first chunk while this one downloads and compiles beside the room's connection. Python's
// grammar is a further chunk (python.ts), added to the code editors once it is here.

import { defaultKeymap, historyKeymap, indentWithTab } from '@codemirror/commands'
import { defaultHighlightStyle, syntaxHighlighting } from '@codemirror/language'
import { Compartment, EditorState, type Extension } from '@codemirror/state'
import { EditorView, ViewPlugin, drawSelection, keymap, lineNumbers } from '@codemirror/view'
import type { Awareness } from 'y-protocols/awareness'
import { yCollab } from 'y-codemirror.next'
import * as Y from 'yjs'

export type { EditorView }

/** What an editor asks of its cell's view. */
export interface EditorHooks {
  /** Shift-Enter: run (or render) and go to the next cell. */
  runAndAdvance (): void
  /** Ctrl-Enter: run (or render) in place. */
  runInPlace (): void
  /** Escape: leave the editor for the cell. */
  escape (): void
  /** The arrow key went past the first (-1) or last (1) line. */
  leave (step: 1 | -1): void
  /** The editor lost the focus. */
  blurred (): void
}

// Python's support, asked for when the browser is next idle after the first code editor (its
// module's evaluation would otherwise come between the page's start and the first editable
// cell): editors built before it is here get it through their compartment.
const language = new Compartment()
let pythonSupport: Extension | null = null
let pythonLoaded: Promise<Extension> | null = null

function whenIdle (): Promise<void> {
  return new Promise(resolve => {
    if (typeof requestIdleCallback === 'function') requestIdleCallback(() => resolve(), { timeout: 200 })
    else setTimeout(resolve, 50) // Safari has no requestIdleCallback
  })
}

function loadPython (): Promise<Extension> {
  pythonLoaded ??= whenIdle()
    .then(async () => await import('./python'))
    .then(module => (pythonSupport = module.python()))
    .catch(error => {
      pythonLoaded = null // a failed download is tried again by the next editor
      throw error
    })
  return pythonLoaded
}

/** Gives a code editor built before Python's support was here that support when it comes. */
const pythonWhenLoaded = ViewPlugin.define(view => {
  let live = true
  if (pythonSupport === null) {
    loadPython().then(support => {
      if (live) view.dispatch({ effects: language.reconfigure(support) })
    }, () => { live = false }) // a network drop: the editor stays plain text, still editable
  }
  return { destroy () { live = false } }
})

/** A new editor of ``ytext``: Python for code cells, plain text for markdown. */
export function createEditor (
  ytext: Y.Text, awareness: Awareness, isCode: boolean, writable: boolean, hooks: EditorHooks
): EditorView {
  const editor = new EditorView({
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: extensions(ytext, awareness, isCode, writable, hooks)
    })
  })
  editor.contentDOM.setAttribute('aria-label', `${isCode ? 'Code' : 'Markdown'} cell source`)
  return editor
}

/** Arrow keys past the first or last line move to the neighbouring cell. */
function leave (view: EditorView, step: 1 | -1, hooks: EditorHooks): boolean {
  const { head } = view.state.selection.main
  const line = view.state.doc.lineAt(head)
  if (step === -1 ? line.number !== 1 : line.number !== view.state.doc.lines) return false
  hooks.leave(step)
  return true
}

function extensions (
  ytext: Y.Text, awareness: Awareness, isCode: boolean, writable: boolean, hooks: EditorHooks
): Extension[] {
  const own: Extension = keymap.of([
    { key: 'Shift-Enter', run: () => { hooks.runAndAdvance(); return true } },
    { key: 'Ctrl-Enter', run: () => { hooks.runInPlace(); return true } },
    { key: 'Escape', run: view => { view.contentDOM.blur(); hooks.escape(); return true } },
    { key: 'ArrowUp', run: view => leave(view, -1, hooks) },
    { key: 'ArrowDown', run: view => leave(view, 1, hooks) }
  ])
  return [
    own,
    lineNumbers(),
    drawSelection(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    // markdown is edited as plain text: its CodeMirror mode brings HTML, CSS and JavaScript
    // parsers along, a third of the bundle, for colours the rendering shows anyway
    isCode ? [language.of(pythonSupport ?? []), pythonWhenLoaded] : [],
    keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
    EditorView.lineWrapping,
    EditorState.readOnly.of(!writable),
    EditorView.editable.of(writable),
    EditorView.contentAttributes.of({ 'aria-readonly': String(!writable) }),
    EditorView.focusChangeEffect.of((_state, focusing) => {
      if (!focusing) hooks.blurred()
      return null
    }),
    yCollab(ytext, awareness, { undoManager: new Y.UndoManager(ytext) })
  ]
}
