// JupyterLab's own notebook model (@jupyter/ydoc's YNotebook) on a document chronohub built.
//
// Reads one JSON object on stdin, writes one JSON object on stdout. Updates are base64.
//   read:   {update}                 -> {notebook, states, requests}
//   edit:   {update, edits: [...]}   -> {update}   (the edits, as an update against the input)
//           edits: {op: "source", cell_id, text} | {op: "insert", index, cell}
//                | {op: "request", request_id, cell_id}
//   replay: {update, updates: [...]} -> {changes, notebook, states}
//           applies the updates one by one and reports the changes the model signalled,
//           as JupyterLab's notebook view would see them.
import { YNotebook } from '@jupyter/ydoc';
import * as Y from 'yjs';

const REQUESTS = 'execution_requests';

function decode(text) {
  return new Uint8Array(Buffer.from(text, 'base64'));
}

function encode(bytes) {
  return Buffer.from(bytes).toString('base64');
}

function load(update) {
  const nb = new YNotebook();
  Y.applyUpdate(nb.ydoc, decode(update));
  return nb;
}

function snapshot(nb) {
  return {
    notebook: {
      cells: nb.cells.map(cell => cell.toJSON()),
      metadata: nb.metadata,
      nbformat: nb.nbformat,
      nbformat_minor: nb.nbformat_minor
    },
    states: Object.fromEntries(
      nb.cells.filter(c => c.cell_type === 'code').map(c => [c.id, c.executionState])
    ),
    requests: nb.ydoc.getMap(REQUESTS).toJSON()
  };
}

function cellById(nb, id) {
  const cell = nb.cells.find(c => c.id === id);
  if (!cell) {
    throw new Error(`no cell ${id}`);
  }
  return cell;
}

function edit(nb, edits) {
  const before = Y.encodeStateVector(nb.ydoc);
  for (const change of edits) {
    if (change.op === 'source') {
      cellById(nb, change.cell_id).setSource(change.text);
    } else if (change.op === 'insert') {
      nb.insertCell(change.index, change.cell);
    } else if (change.op === 'request') {
      // What a JupyterLab-side client writes to ask the session to run a cell.
      nb.ydoc.getMap(REQUESTS).set(change.request_id, { cell_id: change.cell_id });
    } else {
      throw new Error(`unknown edit ${change.op}`);
    }
  }
  return { update: encode(Y.encodeStateAsUpdate(nb.ydoc, before)) };
}

function replay(nb, updates) {
  const changes = [];
  const watch = cell => {
    cell.changed.connect((_, change) => {
      if (change.outputsChange) {
        changes.push(['outputs', cell.id]);
      }
      if (change.streamOutputChange) {
        const inserted = change.streamOutputChange
          .filter(d => d.insert !== undefined)
          .map(d => d.insert)
          .join('');
        changes.push(['stream', cell.id, inserted]);
      }
      // A change can carry both: the count is set before the cell goes idle.
      if (change.executionCountChange) {
        changes.push(['count', cell.id, change.executionCountChange.newValue]);
      }
      if (change.executionStateChange) {
        changes.push(['state', cell.id, change.executionStateChange.newValue]);
      }
    });
  };
  nb.cells.filter(c => c.cell_type === 'code').forEach(watch);
  for (const update of updates) {
    Y.applyUpdate(nb.ydoc, decode(update));
  }
  return { changes, ...snapshot(nb) };
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const nb = load(input.update);
  const mode = process.argv[2];
  let output;
  if (mode === 'read') {
    output = snapshot(nb);
  } else if (mode === 'edit') {
    output = edit(nb, input.edits);
  } else if (mode === 'replay') {
    output = replay(nb, input.updates);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  // The model's awareness keeps a timer alive: leave once the answer is written.
  process.stdout.write(JSON.stringify(output), () => process.exit(0));
}

main().catch(error => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
