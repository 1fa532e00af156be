// What turns a notebook's text into markup: DOMPurify (every piece of HTML from a notebook goes
// through it), marked (markdown) and ansi_up (ANSI colours; it escapes HTML). Together they are
// more than half of the notebook page's first script, and a notebook whose outputs are plain
// text (most) needs none of them: outputs.ts loads this chunk with import() (the page preloads
// it), and draws what needs it when it is here.

import { AnsiUp } from 'ansi_up'
import DOMPurify from 'dompurify'
import { marked } from 'marked'

// An image a notebook's HTML gives without a text alternative is taken as decorative (alt=""),
// so that screen readers skip it rather than read its address.
DOMPurify.addHook('afterSanitizeAttributes', node => {
  if (node.nodeName === 'IMG' && !node.hasAttribute('alt')) node.setAttribute('alt', '')
})

const ansi = new AnsiUp()
ansi.use_classes = true // colours from the stylesheet (readable in dark and light)

/** HTML from a notebook (an output, a markdown cell) made safe to insert: no script, no handler. */
export function sanitize (html: string): string {
  return DOMPurify.sanitize(html, { FORBID_TAGS: ['style', 'form'], FORBID_ATTR: ['style'] })
}

/** Markdown rendered and sanitised. */
export function markdown (source: string): string {
  return sanitize(marked.parse(source, { async: false }))
}

/** Text with ANSI colour codes as sanitised HTML. */
export function ansiHtml (text: string): string {
  return DOMPurify.sanitize(ansi.ansi_to_html(text))
}
