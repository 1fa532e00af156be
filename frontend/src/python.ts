// Python for the code cells' editors: the grammar (@lezer/python), its parser runtime and
// lang-python's completions, a fifth of the editors' script. A chunk of its own, loaded by
// editor.ts when the browser is idle after the first editors are built: a cell is editable
// before its colours are there, and they follow within a frame or two.

export { python } from '@codemirror/lang-python'
