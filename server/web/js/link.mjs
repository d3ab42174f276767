// A public link, opened without an account: the key comes from the URL's fragment (never sent to the
// server), or from a password run through Argon2id here. Whether it names a file or a folder is the
// sealed record's word, never the server's. A folder's entries are opened top-down, each under its
// parent's key with its parent's id, from the folder key in the record: the server can leave entries out
// (the page says how many failed), never add, move or rename one. Every manifest and chunk is verified
// before a byte is saved. A file up to MEMORY_LIMIT is assembled in memory and saved as a download once
// every chunk passed; a larger one streams to disk where the browser can write a file as it goes (the
// File System Access API: a failed check discards the partial file), and elsewhere the page says it is
// past this browser's limit.

import * as F from "./format.mjs";
import { MEMORY_LIMIT, call, checkName, humanSize, unb64 } from "./client.mjs";

const $ = (id) => document.getElementById(id);
const NODE_ID = /^[0-9a-f]{32}$/;
const PAGE = 1000;
const MAX_ENTRIES = 1000000; // as the Python client: a server listing more is not answered with more memory
let linkId = null;
let record = null;

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function busy(on) {
  if (on) document.body.dataset.busy = "1";
  else delete document.body.dataset.busy;
}

function failure(e) {
  if (e.status === 451) return `This was removed after an abuse notice: ${e.message}`;
  if (e.status === 404) return "This link does not exist, has expired or was removed by its owner.";
  if (e instanceof F.IntegrityError) return `Refused: ${e.message}. Nothing was saved.`;
  return `Error: ${e.message}`;
}

function parseLocation() {
  const m = /^\/l\/([A-Za-z0-9_-]{1,64})$/.exec(location.pathname);
  if (!m || !location.hash || location.hash.length < 2) throw new Error("this is not a whole MegaDrive link (it needs the part after #)");
  return { id: m[1], fragment: location.hash.slice(1) };
}

function el(tag, props = {}, ...children) {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

async function open(password = null) {
  const { id, fragment } = parseLocation();
  const info = await (await call("GET", `/l/${id}`)).json();
  let key;
  if (fragment === "p") {
    if (!info.salt || !info.kdf) throw new F.IntegrityError("the link says it needs a password, the server disagrees");
    if (password === null) {
      $("ask-password").hidden = false;
      return;
    }
    key = F.deriveLinkKey(password, unb64(info.salt), info.kdf);
  } else {
    try {
      key = F.sodium().from_base64(fragment, F.sodium().base64_variants.URLSAFE_NO_PADDING);
    } catch {
      throw new Error("the link's key is malformed (was it copied whole?)");
    }
    if (key.length !== F.KEY_BYTES) throw new Error("the link's key is malformed (was it copied whole?)");
  }
  const opened = F.openLink(key, String(info.owner), String(info.node_id), unb64(info.blob));
  checkName(opened.name); // it becomes the saved file's name
  linkId = id;
  record = opened;
  $("ask-password").hidden = true;
  if (record.kind === "dir") await showFolder();
  else showFile(info);
}

// -- a file link -------------------------------------------------------------------------------------

function showFile(info) {
  const version = Number(info.version);
  if (!Number.isSafeInteger(version) || version < 1) throw new F.IntegrityError("the server claims the file has no content");
  const manifest = F.openManifest(record.key, record.owner, record.nodeId, version, record.fileId, unb64(info.manifest));
  const item = { name: record.name, key: record.key, manifest, chunkPath: (cid) => `/l/${linkId}/chunks/${cid}` };
  $("file-name").textContent = record.name;
  $("file-size").textContent = humanSize(manifest.size);
  $("file").hidden = false;
  if (!canSave(manifest.size)) {
    $("limit").hidden = false;
    $("limit").textContent = limitText();
    $("save").disabled = true;
  }
  $("save").onclick = () => guarded("Downloading", () => save(item, $("progress")));
}

function canSave(size) {
  return Boolean(window.showSaveFilePicker) || size <= BigInt(MEMORY_LIMIT);
}

function limitText() {
  return `This browser cannot write a file as it downloads; it saves files up to ${humanSize(MEMORY_LIMIT)} `
    + "from memory. Open the link in a browser that can (Chromium-based), or with `megadrive get`.";
}

// -- a folder link -----------------------------------------------------------------------------------

/** Every live node under the folder, as the server lists it (the newest state of each, by seq). */
async function fetchRows() {
  const rows = new Map();
  let since = 0;
  for (;;) {
    const page = await (await call("GET", `/l/${linkId}/nodes?since=${since}&limit=${PAGE}`)).json();
    const seq = Number(page.seq);
    if (!Array.isArray(page.nodes) || !Number.isSafeInteger(seq)) throw new F.IntegrityError("malformed folder listing");
    for (const n of page.nodes) {
      if (!n || typeof n.node_id !== "string" || !NODE_ID.test(n.node_id)) throw new F.IntegrityError("malformed folder listing");
      const old = rows.get(n.node_id);
      if (!old || Number(old.seq) < Number(n.seq)) rows.set(n.node_id, n);
    }
    if (rows.size > MAX_ENTRIES) throw new Error(`the server lists more than ${MAX_ENTRIES} entries under this link`);
    if (page.more !== true) return rows;
    if (!(seq > since)) throw new F.IntegrityError("the server's folder listing does not advance");
    since = seq;
  }
}

/** The verified entries (path, own meta, and for a hard link the file it names) and how many failed. */
function verifyRows(rows) {
  const children = new Map();
  for (const n of rows.values()) {
    if (typeof n.parent_id !== "string" || n.node_id === record.nodeId) continue;
    if (!children.has(n.parent_id)) children.set(n.parent_id, []);
    children.get(n.parent_id).push(n);
  }
  const files = new Map();
  const listed = [];
  const hard = [];
  let reached = 0;
  const todo = [[record.nodeId, record.key, ""]];
  while (todo.length) {
    const [parentId, parentKey, prefix] = todo.shift();
    const kids = (children.get(parentId) || []).sort((a, b) => (a.node_id < b.node_id ? -1 : 1));
    for (const n of kids) {
      let meta;
      try {
        meta = F.openMeta(parentKey, record.owner, parentId, n.node_id, unb64(n.meta));
        if (meta.k !== n.kind) throw new F.IntegrityError("kind");
        checkName(meta.n);
      } catch {
        continue; // left out, counted below
      }
      reached += 1;
      const path = prefix + meta.n;
      const entry = { path, id: n.node_id, meta, contentId: n.node_id, content: meta, removed: n.removed === true };
      if (meta.k === "dir") {
        listed.push(entry);
        todo.push([n.node_id, meta.keyBytes, `${path}/`]);
      } else if (meta.lt) {
        hard.push(entry);
      } else {
        files.set(n.node_id, meta);
        if (!meta.nn && !meta.l && !meta.t) listed.push(entry);
      }
    }
  }
  for (const entry of hard) {
    const target = files.get(entry.meta.lt);
    if (!target || !F.provesHardLink(entry.id, entry.meta, target)) {
      reached -= 1;
      continue;
    }
    listed.push({ ...entry, contentId: entry.meta.lt, content: target, removed: rows.get(entry.meta.lt).removed === true });
  }
  listed.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { entries: listed, refused: rows.size - reached };
}

async function showFolder() {
  const { entries, refused } = verifyRows(await fetchRows());
  $("folder-name").textContent = `${record.name}/`;
  $("folder-count").textContent = `${entries.filter((e) => e.meta.k !== "dir").length} file(s)`;
  if (refused) {
    $("refused").hidden = false;
    $("refused").textContent = `${refused} entr${refused === 1 ? "y" : "ies"} failed verification and `
      + `${refused === 1 ? "is" : "are"} not shown (tampered with or corrupted on the server).`;
  }
  const body = $("entries");
  body.replaceChildren();
  for (const e of entries) {
    const depth = e.path.split("/").length - 1;
    const name = el("td", { className: e.meta.k === "dir" ? "folder" : "file" },
      `${"\u00a0\u00a0".repeat(depth)}${e.meta.n}${e.meta.k === "dir" ? "/" : ""}`);
    const action = el("td");
    if (e.removed) {
      action.append("removed after an abuse notice");
    } else if (e.meta.k !== "dir") {
      const bar = el("progress", { value: 0, max: 1 });
      const button = el("button", { textContent: "Download", className: "save" });
      button.onclick = () => guarded(`Downloading ${e.path}`, async () => save(await folderItem(e), bar));
      if (!canSave(e.content.s)) {
        button.disabled = true;
        button.title = limitText();
      }
      action.append(button, " ", bar);
    }
    const row = el("tr", {}, name, el("td", { className: "size", textContent: e.meta.k === "dir" ? "" : humanSize(e.content.s) }), action);
    row.dataset.path = e.path;
    body.append(row);
  }
  $("folder").hidden = false;
}

/** A file under the folder, ready to save: its current manifest, verified (never older than its meta). */
async function folderItem(e) {
  const m = e.content;
  const chunkPath = (cid) => `/l/${linkId}/chunks/${cid}?node=${e.contentId}`;
  if (m.v === 0n) return { name: e.meta.n, key: m.keyBytes, manifest: null, chunkPath };
  const d = await (await call("GET", `/l/${linkId}/nodes/${e.contentId}/manifest`)).json();
  const version = Number(d.version);
  if (!Number.isSafeInteger(version) || BigInt(version) < m.v) throw new F.IntegrityError(`the server offers an older version of ${e.path}`);
  const manifest = F.openManifest(m.keyBytes, record.owner, e.contentId, version, m.fileIdBytes, unb64(d.manifest));
  return { name: e.meta.n, key: m.keyBytes, manifest, chunkPath };
}

// -- saving ------------------------------------------------------------------------------------------

/** Every chunk fetched and verified in order; ``sink(plain)`` gets each. Nothing unverified passes. */
async function chunks({ key, manifest, chunkPath }, bar, sink) {
  bar.max = Math.max(1, manifest.chunkIds.length);
  for (let i = 0; i < manifest.chunkIds.length; i += 1) {
    const resp = await call("GET", chunkPath(F.hex(manifest.chunkIds[i])));
    await sink(F.openChunk(key, manifest, i, new Uint8Array(await resp.arrayBuffer())));
    bar.value = i + 1;
  }
}

async function save(item, bar) {
  if (item.manifest && item.manifest.size > BigInt(MEMORY_LIMIT)) {
    const handle = await window.showSaveFilePicker({ suggestedName: item.name });
    const out = await handle.createWritable();
    try {
      await chunks(item, bar, (plain) => out.write(plain));
    } catch (e) {
      await out.abort(); // the partial file is discarded, never left as if whole
      throw e;
    }
    await out.close();
    return;
  }
  const parts = [];
  if (item.manifest) await chunks(item, bar, (plain) => parts.push(plain));
  else bar.value = bar.max; // an empty file: nothing to fetch
  const url = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = item.name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function guarded(what, fn) {
  busy(true);
  try {
    status(`${what}…`);
    await fn();
    status("");
  } catch (e) {
    console.error(e);
    status(failure(e), true);
  } finally {
    busy(false);
  }
}

async function main() {
  await F.init(window.sodium);
  $("ask-password").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded("Opening the link", () => open($("link-password").value));
  });
  document.body.dataset.ready = "1";
  await guarded("Opening the link", () => open());
}

main().catch((e) => status(failure(e), true));
